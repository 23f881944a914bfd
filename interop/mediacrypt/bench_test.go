package mediacrypt

import (
	"bytes"
	"io"
	"testing"
)

var benchSizes = []struct {
	name string
	n    int64
}{{"1MiB", 1 << 20}, {"20MiB", 20 << 20}}

func BenchmarkEncrypt(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			plain, err := io.ReadAll(gen(9, s.n))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(s.n)
			b.ResetTimer()
			for b.Loop() {
				if _, err := Encrypt(io.Discard, bytes.NewReader(plain), testKey, Video); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			var blob bytes.Buffer
			res, err := Encrypt(&blob, gen(9, s.n), testKey, Video)
			if err != nil {
				b.Fatal(err)
			}
			exp := Expected{MediaKey: testKey, Type: Video, FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256, FileLength: uint64(s.n)}
			r := bytes.NewReader(blob.Bytes())
			b.SetBytes(s.n)
			b.ResetTimer()
			for b.Loop() {
				if _, err := Decrypt(io.Discard, r, int64(blob.Len()), exp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
