package mediacrypt

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"
)

// DecryptToFile decrypts while it reads, so where the reads of the download end must
// not matter: every size around the block, the held-back tail and the chunk, read in
// any pieces, decrypts to the same bytes; and a blob that fails a check after its
// plaintext was decrypted (bad MAC, bad hash, wrong length) leaves no file behind.
func TestDecryptToFileAnyReads(t *testing.T) {
	sizes := []int64{0, 1, 15, 16, 17, 31, 32, 33, chunkSize - holdBack, chunkSize - 1, chunkSize, chunkSize + 1,
		chunkSize + holdBack, 3*chunkSize + 5}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data with EOF", iotest.DataErrReader},
		{"odd pieces", func(r io.Reader) io.Reader { return &pieceReader{r: r, sizes: []int{7, 26, 1, 4093, 65536 + 3}} }},
	}
	for _, n := range sizes {
		plain, err := io.ReadAll(gen(uint64(n), n))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		res, err := Encrypt(&buf, bytes.NewReader(plain), testKey, Document)
		if err != nil {
			t.Fatal(err)
		}
		blob := buf.Bytes()
		exp := Expected{MediaKey: testKey, Type: Document, FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256, FileLength: uint64(n)}
		badMAC := bytes.Clone(blob)
		badMAC[len(badMAC)-1] ^= 1
		badHash := exp
		badHash.FileSHA256 = sha([]byte("other"))
		wrongLength := exp
		wrongLength.FileLength = uint64(n) + 1
		if n%blockSize == blockSize-1 {
			wrongLength.FileLength = uint64(n) - 1 // the same blob size: found by the padding
		}
		for _, rd := range readers {
			dir := t.TempDir()
			f, err := DecryptToFile(dir, rd.wrap(bytes.NewReader(blob)), exp)
			if err != nil {
				t.Fatalf("%d bytes, %s reads: %v", n, rd.name, err)
			}
			got, err := io.ReadAll(f)
			_ = f.Close()
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%d bytes, %s reads: got %d bytes (%v), want the %d of the file", n, rd.name, len(got), err, len(plain))
			}
			_ = os.Remove(f.Name())
			refusals := []struct {
				blob []byte
				exp  Expected
				want error
			}{
				{badMAC, exp, ErrBadMAC},
				{blob, badHash, ErrFileHashMismatch},
				{blob, wrongLength, ErrFileLengthMismatch},
			}
			for _, r := range refusals {
				f, err := DecryptToFile(dir, rd.wrap(bytes.NewReader(r.blob)), r.exp)
				if !errors.Is(err, r.want) || f != nil {
					t.Fatalf("%d bytes, %s reads: got %v, %v; want %v", n, rd.name, f, err, r.want)
				}
				if left := dirEntries(t, dir); len(left) != 0 {
					t.Fatalf("%d bytes, %s reads: a refusal (%v) left %v behind", n, rd.name, r.want, left)
				}
			}
		}
	}
}

// pieceReader returns reads of the given sizes in turn.
type pieceReader struct {
	r     io.Reader
	sizes []int
	i     int
}

func (p *pieceReader) Read(b []byte) (int, error) {
	n := p.sizes[p.i%len(p.sizes)]
	p.i++
	return p.r.Read(b[:min(n, len(b))])
}

// The background decryption writes in order, and a failure to write the plaintext file
// (a full disk) comes back to the reader and from wait.
func TestBackgroundWriter(t *testing.T) {
	var out bytes.Buffer
	data, _ := io.ReadAll(gen(9, 5*chunkSize+123))
	b := newBackgroundWriter(&out)
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1000+len(rest)%(2*chunkSize))
		if _, err := b.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := b.wait(); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("wrote %d of %d bytes in order: %v", out.Len(), len(data), err)
	}

	full := errors.New("no space left on device")
	b = newBackgroundWriter(&failAfter{n: chunkSize, err: full})
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = b.Write(data[:chunkSize])
	}
	if !errors.Is(err, full) {
		t.Fatalf("Write kept going after the writer failed: %v", err)
	}
	if err := b.wait(); !errors.Is(err, full) {
		t.Fatalf("wait: %v, want the write error", err)
	}
}

// failAfter takes n bytes, then fails.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, f.err
	}
	f.n -= len(p)
	return len(p), nil
}
