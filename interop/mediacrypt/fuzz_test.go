package mediacrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"errors"
	"os"
	"testing"
)

// fuzzKey and Image are the key and type of the shared image vectors, so their blobs
// seed the corpus as valid inputs.
var fuzzKey = []byte{
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
}

// refDecrypt is the obvious whole-buffer implementation the streaming one must agree
// with: nil plaintext and false when any check of section 7 fails.
func refDecrypt(t testing.TB, blob []byte) ([]byte, bool) {
	if len(blob) < 26 || (len(blob)-10)%16 != 0 {
		return nil, false
	}
	keys, err := ExpandKey(fuzzKey, Image)
	if err != nil {
		t.Fatal(err)
	}
	ct, tag := blob[:len(blob)-10], blob[len(blob)-10:]
	if !hmac.Equal(macOver(keys, ct), tag) {
		return nil, false
	}
	block, _ := aes.NewCipher(keys.CipherKey[:])
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, keys.IV[:]).CryptBlocks(plain, ct)
	pad := int(plain[len(plain)-1])
	if pad == 0 || pad > 16 || !bytes.Equal(plain[len(plain)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, false
	}
	return plain[:len(plain)-pad], true
}

var refusals = []error{
	ErrTooLarge, ErrBadLength, ErrFileLengthMismatch, ErrBadMAC, ErrEncHashMismatch,
	ErrBadPadding, ErrFileHashMismatch,
}

func isRefusal(err error) bool {
	for _, r := range refusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// FuzzDecrypt feeds arbitrary blobs to every decryption entry point and compares them
// with refDecrypt. With sealed set, the input is taken as ciphertext and given a valid
// MAC, so that the fuzzer reaches the padding and plaintext checks behind it. declared,
// when not 0, is the file length the message claims.
func FuzzDecrypt(f *testing.F) {
	for _, v := range loadVectors(f) {
		if v.MediaType != "image" {
			continue
		}
		blob := mustHex(f, v.BlobHex)
		f.Add(blob, false, uint16(len(v.PlaintextHex)/2))
		f.Add(blob, false, uint16(0))
		f.Add(blob[:len(blob)-10], true, uint16(0))
	}
	f.Add([]byte{}, false, uint16(0))
	f.Add([]byte{}, true, uint16(0))
	f.Add(bytes.Repeat([]byte{0}, 16), true, uint16(0))
	f.Add(bytes.Repeat([]byte{0xff}, 33), true, uint16(17))
	f.Add(bytes.Repeat([]byte{7}, 26), false, uint16(0))
	keys, err := ExpandKey(fuzzKey, Image)
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()

	f.Fuzz(func(t *testing.T, in []byte, sealed bool, declared uint16) {
		blob := in
		if sealed {
			blob = append(bytes.Clone(in), macOver(keys, in)...)
		}
		want, ok := refDecrypt(t, blob)
		if ok && declared != 0 && int(declared) != len(want) {
			ok = false
		}
		fileHash := sha([]byte("not the plaintext"))
		if want != nil {
			fileHash = sha(want)
		}
		exp := Expected{
			MediaKey: fuzzKey, Type: Image,
			FileSHA256: fileHash, FileEncSHA256: sha(blob),
			FileLength: uint64(declared), MaxBlobSize: 1 << 20,
		}

		var out bytes.Buffer
		_, err := Decrypt(&out, bytes.NewReader(blob), int64(len(blob)), exp)
		switch {
		case ok && err != nil:
			t.Fatalf("Decrypt refused a valid blob: %v", err)
		case ok && !bytes.Equal(out.Bytes(), want):
			t.Fatalf("Decrypt gave %x, want %x", out.Bytes(), want)
		case !ok && err == nil:
			t.Fatalf("Decrypt accepted an invalid blob, gave %x", out.Bytes())
		case !ok && !isRefusal(err):
			t.Fatalf("Decrypt failed with a non-sentinel error: %v", err)
		case !ok && out.Len() != 0:
			t.Fatalf("Decrypt released %d bytes before refusing (%v)", out.Len(), err)
		}

		got, err2 := DecryptBytes(blob, exp)
		if (err2 == nil) != ok || !bytes.Equal(got, want) && ok || !ok && got != nil {
			t.Fatalf("DecryptBytes: %x, %v; Decrypt said %v", got, err2, err)
		}

		file, err3 := DecryptToFile(dir, bytes.NewReader(blob), exp)
		if (err3 == nil) != ok {
			t.Fatalf("DecryptToFile: %v; Decrypt said %v", err3, err)
		}
		if file != nil {
			data, rerr := os.ReadFile(file.Name())
			file.Close()
			os.Remove(file.Name())
			if rerr != nil || !bytes.Equal(data, want) {
				t.Fatalf("DecryptToFile wrote %x (%v), want %x", data, rerr, want)
			}
		}
		if left := dirEntries(t, dir); len(left) != 0 {
			t.Fatalf("DecryptToFile left %v behind", left)
		}
	})
}
