package mediacrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// Expected is what a received message says about its blob. MediaKey, Type and both
// hashes are required: a message without them cannot be verified, so it is refused.
type Expected struct {
	MediaKey      []byte
	Type          MediaType
	FileSHA256    []byte
	FileEncSHA256 []byte
	// FileLength is the plaintext length the message declares. When set, a blob of any
	// other size is refused before it is read. 0 means not declared; an empty file is
	// still verified through FileSHA256.
	FileLength uint64
	// MaxBlobSize caps the blob size, MAC included; 0 or less means DefaultMaxBlobSize.
	MaxBlobSize int64
}

// Decrypt verifies the blob of the given size read from blob, then writes its plaintext
// to dst, in constant memory. It reads the blob twice.
//
// Before the first plaintext byte reaches dst it has checked the size against the
// limits, the MAC, the blob's SHA-256 and the padding; any failure there leaves dst
// untouched. The plaintext's SHA-256 can only be known after writing it, so if Decrypt
// returns ErrFileHashMismatch (or an I/O error) after writing, dst holds bytes that must
// be discarded: write into something unpublished, such as a temporary file, and publish
// it only when Decrypt returned nil. DecryptToFile and DecryptBytes do that for you.
func Decrypt(dst io.Writer, blob io.ReaderAt, size int64, exp Expected) (Result, error) {
	p, err := exp.prepare()
	if err != nil {
		return Result{}, err
	}
	if err := p.checkSize(size); err != nil {
		return Result{}, err
	}
	if _, err := p.authenticate(io.NewSectionReader(blob, 0, size), size, nil); err != nil {
		return Result{}, err
	}
	if err := p.checkPadding(blob, size); err != nil {
		return Result{}, err
	}
	return p.decrypt(dst, blob, size)
}

// DecryptToFile reads a blob from src (a download, say) exactly once, decrypting it as
// it reads into a new temporary file in dir (mode 0600), and returns that file,
// positioned at its start, only when every check passed: the size, the MAC, the blob's
// SHA-256, the padding, the declared length and the plaintext's SHA-256, in the order
// Decrypt checks them. The plaintext of a blob that is not yet authenticated lands only
// in that unpublished file, which is removed on any error: nothing is left behind in
// dir. dir "" means os.TempDir(). The caller owns the returned file: close it, and
// rename or remove it.
//
// An oversized blob is refused after reading at most one byte past the limit, and with
// Expected.FileLength set a mis-sized one too.
func DecryptToFile(dir string, src io.Reader, exp Expected) (_ *os.File, err error) {
	p, err := exp.prepare()
	if err != nil {
		return nil, err
	}
	out, err := os.CreateTemp(dir, "mediacrypt-*")
	if err != nil {
		return nil, fmt.Errorf("failed to create plaintext file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = out.Close()
			_ = os.Remove(out.Name())
		}
	}()
	dec := p.newStreamDecrypter(plainWriter{out})
	// The decryption runs beside the reading and hashing of the blob, on its own
	// goroutine: the two take about the same time, and a second core halves it.
	bg := newBackgroundWriter(dec)
	_, err = p.authenticate(src, -1, bg)
	if werr := bg.wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, err
	}
	if err = dec.finish(); err != nil {
		return nil, err
	}
	if _, err = out.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("failed to rewind plaintext file: %w", err)
	}
	return out, nil
}

// DecryptBytes decrypts a blob held in memory and returns the plaintext only when every
// check passed. Meant for small blobs (thumbnails, stickers); use DecryptToFile for
// anything that may be large.
func DecryptBytes(blob []byte, exp Expected) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(blob))
	if _, err := Decrypt(&buf, bytes.NewReader(blob), int64(len(blob)), exp); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type prepared struct {
	exp   Expected
	keys  Keys
	block cipher.Block
	// limit is the largest blob to read; exact says it is the size FileLength implies.
	limit int64
	exact bool
}

func (e Expected) prepare() (*prepared, error) {
	if len(e.FileSHA256) != sha256.Size || len(e.FileEncSHA256) != sha256.Size {
		return nil, ErrMissingHash
	}
	keys, err := ExpandKey(e.MediaKey, e.Type)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(keys.CipherKey[:])
	if err != nil {
		return nil, fmt.Errorf("failed to create cipher: %w", err)
	}
	p := &prepared{exp: e, keys: keys, block: block, limit: e.MaxBlobSize}
	if p.limit <= 0 {
		p.limit = DefaultMaxBlobSize
	}
	if e.FileLength != 0 {
		// Compared before encLength so that a huge declared length cannot overflow it.
		if e.FileLength >= uint64(p.limit) || encLength(e.FileLength) > uint64(p.limit) {
			return nil, fmt.Errorf("%w: declared file length %d, limit %d", ErrTooLarge, e.FileLength, p.limit)
		}
		p.limit, p.exact = int64(encLength(e.FileLength)), true
	}
	return p, nil
}

// checkSize refuses a blob by its size alone.
func (p *prepared) checkSize(size int64) error {
	switch {
	case size > p.limit && p.exact:
		return fmt.Errorf("%w: blob of at least %d bytes, expected %d", ErrFileLengthMismatch, size, p.limit)
	case size > p.limit:
		return fmt.Errorf("%w: blob of at least %d bytes, limit %d", ErrTooLarge, size, p.limit)
	case size < blockSize+MACLength || (size-MACLength)%blockSize != 0:
		return fmt.Errorf("%w: got %d bytes", ErrBadLength, size)
	case p.exact && size != p.limit:
		return fmt.Errorf("%w: blob of %d bytes, expected %d", ErrFileLengthMismatch, size, p.limit)
	}
	return nil
}

// authenticate reads the whole blob once, writing it to sink too if given
// (DecryptToFile's decrypter), and checks its size, MAC and SHA-256. want is the size
// the reader should yield, or -1. It returns the blob size.
func (p *prepared) authenticate(src io.Reader, want int64, sink io.Writer) (int64, error) {
	encHash := sha256.New()
	tail := &macTail{mac: hmac.New(sha256.New, p.keys.MACKey[:])}
	tail.mac.Write(p.keys.IV[:])
	var w io.Writer = io.MultiWriter(encHash, tail)
	if sink != nil {
		w = io.MultiWriter(encHash, tail, sink)
	}
	// One byte past the limit is enough to know the blob is too big.
	size, err := io.CopyBuffer(w, io.LimitReader(src, p.limit+1), make([]byte, chunkSize))
	if err != nil {
		return 0, fmt.Errorf("failed to read blob: %w", err)
	}
	if want >= 0 && size != want {
		return 0, fmt.Errorf("%w: blob ended after %d of %d bytes", ErrBadLength, size, want)
	}
	if err := p.checkSize(size); err != nil {
		return 0, err
	}
	// The MAC first: it is what proves the ciphertext came from the key holder.
	if !hmac.Equal(tail.mac.Sum(nil)[:MACLength], tail.buf[:]) {
		return 0, ErrBadMAC
	}
	if !hmac.Equal(encHash.Sum(nil), p.exp.FileEncSHA256) {
		return 0, ErrEncHashMismatch
	}
	return size, nil
}

// checkPadding decrypts only the last block (CBC needs just it and the one before) to
// validate the padding and the declared length before any plaintext is released.
func (p *prepared) checkPadding(ra io.ReaderAt, size int64) error {
	ctLen := size - MACLength
	var two [2 * blockSize]byte
	if ctLen == blockSize {
		copy(two[:blockSize], p.keys.IV[:])
		if _, err := ra.ReadAt(two[blockSize:], 0); err != nil {
			return fmt.Errorf("failed to read last block: %w", err)
		}
	} else if _, err := ra.ReadAt(two[:], ctLen-2*blockSize); err != nil {
		return fmt.Errorf("failed to read last blocks: %w", err)
	}
	last := two[blockSize:]
	p.block.Decrypt(last, last)
	for i := range last {
		last[i] ^= two[i]
	}
	pad, err := unpad(last)
	if err != nil {
		return err
	}
	if n := uint64(ctLen) - uint64(pad); p.exact && n != p.exp.FileLength {
		return fmt.Errorf("%w: plaintext of %d bytes, expected %d", ErrFileLengthMismatch, n, p.exp.FileLength)
	}
	return nil
}

// decrypt is the second pass over an authenticated blob of the given size.
func (p *prepared) decrypt(dst io.Writer, blob io.ReaderAt, size int64) (Result, error) {
	ctLen := size - MACLength
	cbc := newCBCDecrypter(p.block, &p.keys)
	r := io.NewSectionReader(blob, 0, ctLen)
	fileHash := sha256.New()
	buf := make([]byte, chunkSize)
	var written uint64
	for remaining := ctLen; remaining > 0; {
		n := int(min(int64(chunkSize), remaining))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return Result{}, fmt.Errorf("failed to read ciphertext: %w", err)
		}
		remaining -= int64(n)
		cbc.CryptBlocks(buf[:n], buf[:n])
		out := buf[:n]
		if remaining == 0 {
			// Checked again: the blob may have changed since the first pass, and this
			// pass must not trust what that one saw.
			pad, err := unpad(out[n-blockSize:])
			if err != nil {
				return Result{}, err
			}
			out = out[:n-pad]
		}
		fileHash.Write(out)
		if _, err := dst.Write(out); err != nil {
			return Result{}, fmt.Errorf("failed to write plaintext: %w", err)
		}
		written += uint64(len(out))
	}
	sum := fileHash.Sum(nil)
	if !hmac.Equal(sum, p.exp.FileSHA256) {
		return Result{}, ErrFileHashMismatch
	}
	return Result{
		FileSHA256:    sum,
		FileEncSHA256: bytes.Clone(p.exp.FileEncSHA256),
		FileLength:    written,
		EncLength:     uint64(size),
	}, nil
}

// unpad returns the PKCS#7 padding length of the final plaintext block.
func unpad(last []byte) (int, error) {
	pad := int(last[blockSize-1])
	if pad == 0 || pad > blockSize {
		return 0, ErrBadPadding
	}
	for _, b := range last[blockSize-pad:] {
		if int(b) != pad {
			return 0, ErrBadPadding
		}
	}
	return pad, nil
}

// macTail feeds a MAC with everything written except the last MACLength bytes, which it
// keeps: the tag of a blob read as a stream is known only once the stream ends.
type macTail struct {
	mac hash.Hash
	buf [MACLength]byte
	n   int
}

func (t *macTail) Write(p []byte) (int, error) {
	total := t.n + len(p)
	if total <= MACLength {
		copy(t.buf[t.n:], p)
		t.n = total
		return len(p), nil
	}
	flush := total - MACLength
	fromBuf := min(flush, t.n)
	t.mac.Write(t.buf[:fromBuf])
	fromP := flush - fromBuf
	t.mac.Write(p[:fromP])
	var next [MACLength]byte
	k := copy(next[:], t.buf[fromBuf:t.n])
	copy(next[k:], p[fromP:])
	t.buf, t.n = next, MACLength
	return len(p), nil
}

// holdBack is what a streamed blob's end may turn out to be: the last ciphertext block,
// whose padding is checked apart, and the MAC.
const holdBack = blockSize + MACLength

// streamDecrypter decrypts a blob as it is written to it, one pass with reading it.
// Only the end of the stream tells the last block and the MAC from the rest, so it
// holds back holdBack bytes and writes the plaintext of everything before them to dst.
// That plaintext is not authenticated yet: dst must stay unpublished until both
// prepared.authenticate and finish passed.
type streamDecrypter struct {
	p        *prepared
	cbc      cipher.BlockMode
	dst      io.Writer
	fileHash hash.Hash
	// buf holds the bytes not decrypted yet, n of them, and has room for a chunk more.
	buf     []byte
	n       int
	written uint64
}

func (p *prepared) newStreamDecrypter(dst io.Writer) *streamDecrypter {
	return &streamDecrypter{p: p, cbc: newCBCDecrypter(p.block, &p.keys), dst: dst,
		fileHash: sha256.New(), buf: make([]byte, chunkSize+holdBack+blockSize)}
}

func (d *streamDecrypter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := copy(d.buf[d.n:], p)
		p, d.n = p[k:], d.n+k
		// Whole blocks only; the buffer always has room for more than one once they
		// are decrypted, so this ends.
		ready := (d.n - holdBack) / blockSize * blockSize
		if ready <= 0 {
			continue
		}
		out := d.buf[:ready]
		d.cbc.CryptBlocks(out, out)
		d.fileHash.Write(out)
		if _, err := d.dst.Write(out); err != nil {
			return total - len(p), err
		}
		d.written += uint64(ready)
		d.n = copy(d.buf, d.buf[ready:d.n])
	}
	return total, nil
}

// finish decrypts the last block of a blob that authenticate accepted, checks its
// padding and the declared length, writes the last plaintext bytes and checks the
// plaintext's SHA-256.
func (d *streamDecrypter) finish() error {
	if d.n != holdBack {
		// authenticate's size check makes this impossible.
		return fmt.Errorf("%w: %d bytes left at the end", ErrBadLength, d.n)
	}
	last := d.buf[:blockSize]
	d.cbc.CryptBlocks(last, last)
	pad, err := unpad(last)
	if err != nil {
		return err
	}
	out := last[:blockSize-pad]
	if n := d.written + uint64(len(out)); d.p.exact && n != d.p.exp.FileLength {
		return fmt.Errorf("%w: plaintext of %d bytes, expected %d", ErrFileLengthMismatch, n, d.p.exp.FileLength)
	}
	d.fileHash.Write(out)
	if _, err := d.dst.Write(out); err != nil {
		return err
	}
	if !hmac.Equal(d.fileHash.Sum(nil), d.p.exp.FileSHA256) {
		return ErrFileHashMismatch
	}
	return nil
}

// plainWriter tells plaintext file write failures apart from read failures of the
// source.
type plainWriter struct{ f *os.File }

func (w plainWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		return n, fmt.Errorf("failed to write plaintext file: %w", err)
	}
	return n, nil
}

// backgroundWriter writes to w on a goroutine of its own, in order, holding at most
// backgroundBuffers copies of what it was given. Its first error comes back from the
// next Write and from wait.
type backgroundWriter struct {
	w    io.Writer
	free chan []byte
	work chan []byte
	done chan struct{}
	mu   sync.Mutex
	err  error
}

const backgroundBuffers = 3

func newBackgroundWriter(w io.Writer) *backgroundWriter {
	b := &backgroundWriter{w: w, free: make(chan []byte, backgroundBuffers), work: make(chan []byte, backgroundBuffers),
		done: make(chan struct{})}
	for range backgroundBuffers {
		b.free <- make([]byte, 0, chunkSize)
	}
	go b.run()
	return b
}

func (b *backgroundWriter) run() {
	defer close(b.done)
	for buf := range b.work {
		if b.failed() == nil {
			if _, err := b.w.Write(buf); err != nil {
				b.mu.Lock()
				b.err = err
				b.mu.Unlock()
			}
		}
		b.free <- buf[:0]
	}
}

func (b *backgroundWriter) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *backgroundWriter) Write(p []byte) (int, error) {
	if err := b.failed(); err != nil {
		return 0, err
	}
	for n := 0; n < len(p); {
		buf := <-b.free
		k := min(len(p)-n, cap(buf))
		b.work <- append(buf, p[n:n+k]...)
		n += k
	}
	return len(p), nil
}

// wait ends the goroutine once it wrote everything and returns its first error. Call
// it exactly once, whatever happened before.
func (b *backgroundWriter) wait() error {
	close(b.work)
	<-b.done
	return b.failed()
}
