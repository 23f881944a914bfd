package mediacrypt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

type mediaVector struct {
	MediaType        string `json:"media_type"`
	HKDFInfo         string `json:"hkdf_info"`
	MediaKeyHex      string `json:"media_key_hex"`
	PlaintextHex     string `json:"plaintext_hex"`
	IVHex            string `json:"iv_hex"`
	CipherKeyHex     string `json:"cipher_key_hex"`
	MACKeyHex        string `json:"mac_key_hex"`
	BlobHex          string `json:"blob_hex"`
	FileSHA256B64    string `json:"file_sha256_b64"`
	FileEncSHA256B64 string `json:"file_enc_sha256_b64"`
}

// loadVectors finds shared/vectors/media.json by walking up from the package directory:
// the repository and shared/ are siblings, wherever the checkout lives.
func loadVectors(t testing.TB) []mediaVector {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("failed to get working directory: %v", err)
	}
	for {
		candidate := filepath.Join(dir, "shared", "vectors")
		if st, err := os.Stat(candidate); err == nil && st.IsDir() {
			data, err := os.ReadFile(filepath.Join(candidate, "media.json"))
			if err != nil {
				t.Fatalf("failed to read media vectors: %v", err)
			}
			var file struct {
				Vectors []mediaVector `json:"vectors"`
			}
			if err := json.Unmarshal(data, &file); err != nil {
				t.Fatalf("failed to parse media vectors: %v", err)
			}
			if len(file.Vectors) == 0 {
				t.Fatalf("%s holds no vectors", candidate)
			}
			return file.Vectors
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no shared/vectors directory above the package directory; the test vectors are required")
		}
		dir = parent
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("bad base64 %q: %v", s, err)
	}
	return b
}

func TestVectors(t *testing.T) {
	vectors := loadVectors(t)
	for i, v := range vectors {
		mediaKey := mustHex(t, v.MediaKeyHex)
		plaintext := mustHex(t, v.PlaintextHex)
		blob := mustHex(t, v.BlobHex)
		fileSHA := mustB64(t, v.FileSHA256B64)
		encSHA := mustB64(t, v.FileEncSHA256B64)
		t.Run(v.MediaType+"/"+hex.EncodeToString([]byte{byte(i)}), func(t *testing.T) {
			mt, err := ParseMediaType(v.MediaType)
			if err != nil {
				t.Fatal(err)
			}
			if mt.HKDFInfo() != v.HKDFInfo {
				t.Errorf("info %q, vector says %q", mt.HKDFInfo(), v.HKDFInfo)
			}
			keys, err := ExpandKey(mediaKey, mt)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(keys.IV[:]); got != v.IVHex {
				t.Errorf("iv %s, want %s", got, v.IVHex)
			}
			if got := hex.EncodeToString(keys.CipherKey[:]); got != v.CipherKeyHex {
				t.Errorf("cipher key %s, want %s", got, v.CipherKeyHex)
			}
			if got := hex.EncodeToString(keys.MACKey[:]); got != v.MACKeyHex {
				t.Errorf("mac key %s, want %s", got, v.MACKeyHex)
			}

			var out bytes.Buffer
			res, err := Encrypt(&out, bytes.NewReader(plaintext), mediaKey, mt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), blob) {
				t.Errorf("blob %x, want %x", out.Bytes(), blob)
			}
			if !bytes.Equal(res.FileSHA256, fileSHA) || !bytes.Equal(res.FileEncSHA256, encSHA) {
				t.Errorf("hashes %x %x, want %x %x", res.FileSHA256, res.FileEncSHA256, fileSHA, encSHA)
			}
			if res.FileLength != uint64(len(plaintext)) || res.EncLength != uint64(len(blob)) {
				t.Errorf("lengths %d/%d, want %d/%d", res.FileLength, res.EncLength, len(plaintext), len(blob))
			}

			exp := Expected{MediaKey: mediaKey, Type: mt, FileSHA256: fileSHA, FileEncSHA256: encSHA, FileLength: uint64(len(plaintext))}
			got, err := DecryptBytes(blob, exp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plaintext) {
				t.Errorf("decrypted %x, want %x", got, plaintext)
			}
			dir := t.TempDir()
			f, err := DecryptToFile(dir, bytes.NewReader(blob), exp)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fromFile, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fromFile, plaintext) {
				t.Errorf("decrypted file %x, want %x", fromFile, plaintext)
			}
		})
	}
}

func TestParseMediaType(t *testing.T) {
	tests := []struct {
		in   string
		want MediaType
		info string
	}{
		{"image", Image, "WhatsApp Image Keys"},
		{"video", Video, "WhatsApp Video Keys"},
		{"audio", Audio, "WhatsApp Audio Keys"},
		{"ptt", Audio, "WhatsApp Audio Keys"},
		{"document", Document, "WhatsApp Document Keys"},
	}
	for _, tt := range tests {
		got, err := ParseMediaType(tt.in)
		if err != nil || got != tt.want || got.HKDFInfo() != tt.info {
			t.Errorf("ParseMediaType(%q) = %v (%q), %v; want %v (%q)", tt.in, got, got.HKDFInfo(), err, tt.want, tt.info)
		}
	}
	for _, bad := range []string{"", "Image", "sticker", "ptv"} {
		if _, err := ParseMediaType(bad); !errors.Is(err, ErrUnknownMediaType) {
			t.Errorf("ParseMediaType(%q) error %v, want ErrUnknownMediaType", bad, err)
		}
	}
	if _, err := ExpandKey(make([]byte, 32), 0); !errors.Is(err, ErrUnknownMediaType) {
		t.Errorf("zero MediaType: %v, want ErrUnknownMediaType", err)
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := ExpandKey(make([]byte, n), Image); !errors.Is(err, ErrBadMediaKey) {
			t.Errorf("%d-byte key: %v, want ErrBadMediaKey", n, err)
		}
	}
}

func TestNewMediaKey(t *testing.T) {
	a, err := NewMediaKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMediaKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != MediaKeyLength || bytes.Equal(a, b) {
		t.Errorf("keys %x and %x: want two different 32-byte keys", a, b)
	}
}
