package mediacrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// gen is a deterministic plaintext stream of n bytes; two calls with the same arguments
// yield the same bytes without either being held in memory.
func gen(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// sealRaw builds a blob from already padded (or deliberately mis-padded) plaintext,
// with a valid MAC, so that tests can reach the checks behind the MAC.
func sealRaw(t testing.TB, mediaKey []byte, mt MediaType, padded []byte) []byte {
	t.Helper()
	keys, err := ExpandKey(mediaKey, mt)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(keys.CipherKey[:])
	if err != nil {
		t.Fatal(err)
	}
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, keys.IV[:]).CryptBlocks(ct, padded)
	return append(ct, macOver(keys, ct)...)
}

func macOver(keys Keys, ct []byte) []byte {
	m := hmac.New(sha256.New, keys.MACKey[:])
	m.Write(keys.IV[:])
	m.Write(ct)
	return m.Sum(nil)[:MACLength]
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// countingWriter records how many bytes were released to it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// countingReader records how many bytes were taken from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// untouchable is a blob that must not be read at all.
type untouchable struct{ t testing.TB }

func (u untouchable) ReadAt([]byte, int64) (int, error) {
	u.t.Error("blob was read although its size alone should have refused it")
	return 0, io.EOF
}

func (u untouchable) Read([]byte) (int, error) {
	u.t.Error("blob was read although the declared length alone should have refused it")
	return 0, io.EOF
}

// compareWriter checks what is written against an expected stream, chunk by chunk.
type compareWriter struct {
	want io.Reader
	off  int64
	bad  bool
	buf  []byte
}

func (w *compareWriter) Write(p []byte) (int, error) {
	if cap(w.buf) < len(p) {
		w.buf = make([]byte, len(p))
	}
	b := w.buf[:len(p)]
	if _, err := io.ReadFull(w.want, b); err != nil || !bytes.Equal(b, p) {
		w.bad = true
	}
	w.off += int64(len(p))
	return len(p), nil
}

// sameStream reports whether two readers yield the same bytes, in constant memory.
func sameStream(t testing.TB, a, b io.Reader) bool {
	t.Helper()
	w := &compareWriter{want: b}
	if _, err := io.CopyBuffer(w, a, make([]byte, 1<<16)); err != nil {
		t.Fatal(err)
	}
	n, _ := b.Read(make([]byte, 1))
	return !w.bad && n == 0
}

func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

var testKey = bytes.Repeat([]byte{0x42}, MediaKeyLength)
