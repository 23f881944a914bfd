package mediacrypt

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestRefusals(t *testing.T) {
	plain := bytes.Repeat([]byte("refuse me "), 100) // 1000 bytes: 63 blocks
	var sealed bytes.Buffer
	res, err := Encrypt(&sealed, bytes.NewReader(plain), testKey, Document)
	if err != nil {
		t.Fatal(err)
	}
	good := sealed.Bytes()
	base := Expected{MediaKey: testKey, Type: Document, FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256}

	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	flip := func(i int) []byte { return edit(func(b []byte) []byte { b[i] ^= 0x01; return b }) }
	// withHash re-aims the expected blob hash at a tampered blob, so the test shows the
	// MAC (not the hash) refusing it.
	withHash := func(blob []byte) Expected { e := base; e.FileEncSHA256 = sha(blob); return e }

	// 1000 bytes pad with 8 × 0x08; blocks whose last byte is 0 or whose tail disagrees.
	badPad := func(last []byte) []byte {
		padded := append(bytes.Clone(plain[:992]), last...)
		return sealRaw(t, testKey, Document, padded)
	}
	padZero := badPad(append(bytes.Repeat([]byte{'x'}, 15), 0))
	padBig := badPad(append(bytes.Repeat([]byte{'x'}, 15), 17))
	padMixed := badPad(append(bytes.Repeat([]byte{'x'}, 12), 4, 4, 3, 4))
	padOnly := sealRaw(t, testKey, Document, bytes.Repeat([]byte{0}, 16))
	// Over several chunks, so that a padding check left to the end would come too late.
	padLarge := sealRaw(t, testKey, Document, append(bytes.Repeat([]byte{'y'}, 3*chunkSize-1), 0))

	tests := []struct {
		name string
		blob []byte
		exp  Expected
		want error
	}{
		{"flipped ciphertext byte", flip(100), withHash(flip(100)), ErrBadMAC},
		{"flipped first ciphertext byte", flip(0), base, ErrBadMAC},
		{"flipped MAC byte", flip(len(good) - 1), withHash(flip(len(good) - 1)), ErrBadMAC},
		{"wrong key", good, func() Expected { e := base; e.MediaKey = bytes.Repeat([]byte{1}, 32); return e }(), ErrBadMAC},
		{"wrong media type", good, func() Expected { e := base; e.Type = Image; return e }(), ErrBadMAC},
		{"wrong enc hash", good, func() Expected { e := base; e.FileEncSHA256 = sha([]byte("x")); return e }(), ErrEncHashMismatch},
		{"wrong file hash", good, func() Expected { e := base; e.FileSHA256 = sha([]byte("x")); return e }(), ErrFileHashMismatch},
		{"truncated by one byte", good[:len(good)-1], base, ErrBadLength},
		{"truncated by one block", append(bytes.Clone(good[:len(good)-26]), good[len(good)-10:]...), base, ErrBadMAC},
		{"MAC missing", good[:len(good)-10], base, ErrBadLength},
		{"three bytes extra", append(bytes.Clone(good), 1, 2, 3), base, ErrBadLength},
		{"empty", nil, base, ErrBadLength},
		{"MAC only", good[len(good)-10:], base, ErrBadLength},
		{"oversize", good, func() Expected { e := base; e.MaxBlobSize = int64(len(good)) - 16; return e }(), ErrTooLarge},
		{"declared length differs", good, func() Expected { e := base; e.FileLength = 1016; return e }(), ErrFileLengthMismatch},
		{"declared length in the last block differs", good, func() Expected { e := base; e.FileLength = 1001; return e }(), ErrFileLengthMismatch},
		{"pad byte zero", padZero, withHash(padZero), ErrBadPadding},
		{"pad byte over 16", padBig, withHash(padBig), ErrBadPadding},
		{"pad bytes disagree", padMixed, withHash(padMixed), ErrBadPadding},
		{"single block of zeros", padOnly, withHash(padOnly), ErrBadPadding},
		{"bad padding after several chunks", padLarge, withHash(padLarge), ErrBadPadding},
		{"file hash missing", good, func() Expected { e := base; e.FileSHA256 = nil; return e }(), ErrMissingHash},
		{"enc hash short", good, func() Expected { e := base; e.FileEncSHA256 = e.FileEncSHA256[:31]; return e }(), ErrMissingHash},
		{"key short", good, func() Expected { e := base; e.MediaKey = testKey[:16]; return e }(), ErrBadMediaKey},
		{"type unset", good, func() Expected { e := base; e.Type = 0; return e }(), ErrUnknownMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w countingWriter
			_, err := Decrypt(&w, bytes.NewReader(tt.blob), int64(len(tt.blob)), tt.exp)
			if !errors.Is(err, tt.want) {
				t.Errorf("Decrypt: %v, want %v", err, tt.want)
			}
			// Only the plaintext hash is checked after release; Decrypt documents it.
			if tt.want != ErrFileHashMismatch && w.n != 0 {
				t.Errorf("Decrypt released %d plaintext bytes before refusing", w.n)
			}

			if got, err := DecryptBytes(tt.blob, tt.exp); !errors.Is(err, tt.want) || got != nil {
				t.Errorf("DecryptBytes: %d bytes, %v; want nothing, %v", len(got), err, tt.want)
			}

			dir := t.TempDir()
			f, err := DecryptToFile(dir, bytes.NewReader(tt.blob), tt.exp)
			if !errors.Is(err, tt.want) || f != nil {
				t.Errorf("DecryptToFile: %v, %v; want nil, %v", f, err, tt.want)
				if f != nil {
					f.Close()
				}
			}
			if left := dirEntries(t, dir); len(left) != 0 {
				t.Errorf("DecryptToFile left %v behind", left)
			}
		})
	}
}

// TestOversizeNotRead checks that an oversized blob is refused on its size alone when
// the size is known, and after at most one byte past the limit when it is streamed.
func TestOversizeNotRead(t *testing.T) {
	exp := Expected{MediaKey: testKey, Type: Video, FileSHA256: sha(nil), FileEncSHA256: sha(nil), MaxBlobSize: 1 << 20}

	var w countingWriter
	if _, err := Decrypt(&w, untouchable{t}, 1<<30, exp); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Decrypt of a 1 GiB blob: %v, want ErrTooLarge", err)
	}

	src := &countingReader{r: gen(1, 1<<30)}
	dir := t.TempDir()
	if f, err := DecryptToFile(dir, src, exp); !errors.Is(err, ErrTooLarge) || f != nil {
		t.Errorf("DecryptToFile of a 1 GiB stream: %v, want ErrTooLarge", err)
	}
	if src.n > exp.MaxBlobSize+1 {
		t.Errorf("read %d bytes of an oversized stream, limit %d", src.n, exp.MaxBlobSize)
	}
	if left := dirEntries(t, dir); len(left) != 0 {
		t.Errorf("DecryptToFile left %v behind", left)
	}

	// A declared length over the limit is refused before anything is read.
	big := exp
	big.FileLength = 1 << 20
	if f, err := DecryptToFile(dir, untouchable{t}, big); !errors.Is(err, ErrTooLarge) || f != nil {
		t.Errorf("declared length over the limit: %v, want ErrTooLarge", err)
	}
	big.FileLength = ^uint64(0)
	if _, err := Decrypt(&w, untouchable{t}, 100, big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("declared length 2^64-1: %v, want ErrTooLarge", err)
	}

	// With a declared length, a longer stream stops one byte past the size it implies.
	declared := exp
	declared.FileLength = 100 // blob of 122 bytes
	src = &countingReader{r: gen(2, 1<<30)}
	if _, err := DecryptToFile(dir, src, declared); !errors.Is(err, ErrFileLengthMismatch) {
		t.Errorf("stream longer than declared: %v, want ErrFileLengthMismatch", err)
	}
	if src.n > 123 {
		t.Errorf("read %d bytes of a stream declared as 122", src.n)
	}
	if w.n != 0 {
		t.Errorf("released %d bytes", w.n)
	}
}

// failingReader breaks after some bytes, like a dropped download.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestDecryptToFileReadError(t *testing.T) {
	var blob bytes.Buffer
	res, err := Encrypt(&blob, gen(3, 200000), testKey, Image)
	if err != nil {
		t.Fatal(err)
	}
	exp := Expected{MediaKey: testKey, Type: Image, FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256}
	boom := errors.New("connection reset")
	dir := t.TempDir()
	src := &failingReader{r: io.LimitReader(&blob, 100000), err: boom}
	if f, err := DecryptToFile(dir, src, exp); !errors.Is(err, boom) || f != nil {
		t.Errorf("got %v, %v; want nil and the read error", f, err)
	}
	if left := dirEntries(t, dir); len(left) != 0 {
		t.Errorf("left %v behind", left)
	}
}

func TestEncryptErrors(t *testing.T) {
	boom := errors.New("disk full")
	if _, err := Encrypt(io.Discard, bytes.NewReader(nil), testKey[:31], Image); !errors.Is(err, ErrBadMediaKey) {
		t.Errorf("short key: %v", err)
	}
	if _, err := Encrypt(io.Discard, bytes.NewReader(nil), testKey, 0); !errors.Is(err, ErrUnknownMediaType) {
		t.Errorf("unset type: %v", err)
	}
	if _, err := Encrypt(io.Discard, &failingReader{r: gen(1, 10), err: boom}, testKey, Image); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	if _, err := Encrypt(errWriter{boom}, gen(1, 10), testKey, Image); !errors.Is(err, boom) {
		t.Errorf("write error: %v", err)
	}
}

// A blob whose writing fails half-way (the disk filled up) ends Encrypt with that
// error, while the plaintext still has chunks to give.
func TestEncryptWriteFailsHalfway(t *testing.T) {
	boom := errors.New("disk full")
	dst := &failAfterWriter{left: 3*chunkSize + 100, err: boom}
	if _, err := Encrypt(dst, gen(2, 40*chunkSize), testKey, Document); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the write error", err)
	}
	if dst.written > 3*chunkSize+100 {
		t.Fatalf("%d bytes written past the failure", dst.written)
	}
}

// failAfterWriter takes left bytes, then fails every write.
type failAfterWriter struct {
	left, written int
	err           error
}

func (w *failAfterWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left, w.written = 0, w.written+n
		return n, w.err
	}
	w.left -= len(p)
	w.written += len(p)
	return len(p), nil
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

// swappingBlob serves one blob until the last ciphertext blocks have been read (the end
// of the first pass), and another after: a file rewritten between the two passes.
type swappingBlob struct {
	first, then []byte
	swapped     bool
}

func (s *swappingBlob) ReadAt(p []byte, off int64) (int, error) {
	src := s.first
	if s.swapped {
		src = s.then
	}
	if off+int64(len(p)) >= int64(len(s.first)-MACLength) {
		s.swapped = true
	}
	return bytes.NewReader(src).ReadAt(p, off)
}

func TestBlobChangedBetweenPasses(t *testing.T) {
	var blob bytes.Buffer
	res, err := Encrypt(&blob, gen(4, 5000), testKey, Audio)
	if err != nil {
		t.Fatal(err)
	}
	exp := Expected{MediaKey: testKey, Type: Audio, FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256}
	tampered := bytes.Clone(blob.Bytes())
	tampered[20] ^= 0x80
	var out bytes.Buffer
	sb := &swappingBlob{first: blob.Bytes(), then: tampered}
	if _, err := Decrypt(&out, sb, int64(blob.Len()), exp); !errors.Is(err, ErrFileHashMismatch) {
		t.Errorf("blob changed after verification: %v, want ErrFileHashMismatch", err)
	}
	if !sb.swapped {
		t.Fatal("the blob was never swapped; the test proves nothing")
	}
}
