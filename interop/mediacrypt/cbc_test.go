package mediacrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"testing"
)

// The CBC the blobs are made with (assembly on amd64 with AES-NI) gives crypto/cipher's
// bytes both ways, for random keys and lengths, in place or not, over several calls
// that chain on each other.
func TestCBCMatchesCryptoCipher(t *testing.T) {
	for i := range 200 {
		var keys Keys
		if _, err := rand.Read(keys.CipherKey[:]); err != nil {
			t.Fatal(err)
		}
		if _, err := rand.Read(keys.IV[:]); err != nil {
			t.Fatal(err)
		}
		block, err := aes.NewCipher(keys.CipherKey[:])
		if err != nil {
			t.Fatal(err)
		}
		// Lengths around the eight blocks decryption takes at once.
		var parts [][]byte
		for _, n := range []int{i % 20, (i * 7) % 33, 8, 1, 0, i % 9} {
			p := make([]byte, n*blockSize)
			if _, err := rand.Read(p); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
		inPlace := i%2 == 0
		run := func(m cipher.BlockMode, in [][]byte) []byte {
			var out []byte
			for _, p := range in {
				dst := bytes.Clone(p)
				if inPlace {
					m.CryptBlocks(dst, dst)
				} else {
					m.CryptBlocks(dst, p)
				}
				out = append(out, dst...)
			}
			return out
		}
		plain := bytes.Join(parts, nil)
		want := run(cipher.NewCBCEncrypter(block, keys.IV[:]), parts)
		if got := run(newCBCEncrypter(block, &keys), parts); !bytes.Equal(got, want) {
			t.Fatalf("case %d: encryption differs from crypto/cipher", i)
		}
		var ctParts [][]byte
		off := 0
		for _, p := range parts {
			ctParts = append(ctParts, want[off:off+len(p)])
			off += len(p)
		}
		if got := run(newCBCDecrypter(block, &keys), ctParts); !bytes.Equal(got, plain) {
			t.Fatalf("case %d: decryption does not give the plaintext back", i)
		}
	}
}

// The key schedule is FIPS 197's: its appendix A.3 example, last round key.
func TestAESRoundKeys256(t *testing.T) {
	key := [32]byte{0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
		0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4}
	enc := aesRoundKeys256(&key)
	want := []byte{0xfe, 0x48, 0x90, 0xd1, 0xe6, 0x18, 0x8d, 0x0b, 0x04, 0x6d, 0xf3, 0x44, 0x70, 0x6c, 0x63, 0x1e}
	if !bytes.Equal(enc[224:], want) || !bytes.Equal(enc[:32], key[:]) {
		t.Fatalf("round keys %x", enc)
	}
}
