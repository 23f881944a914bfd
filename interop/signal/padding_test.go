package signal

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

func TestPadRoundTrip(t *testing.T) {
	seen := map[int]bool{}
	for _, msg := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte{16}, 40), []byte("hello world")} {
		for range 200 {
			padded := Pad(msg)
			n := len(padded) - len(msg)
			if n < 1 || n > 16 {
				t.Fatalf("padding of %d bytes", n)
			}
			seen[n] = true
			if !bytes.Equal(padded[:len(msg)], msg) {
				t.Fatal("Pad changed the message")
			}
			got, err := Unpad(padded)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("Unpad(Pad(%q)) = %q, %v", msg, got, err)
			}
		}
	}
	if len(seen) != 16 {
		t.Fatalf("only %d of 16 padding lengths seen in 1000 pads", len(seen))
	}
}

func TestPadDoesNotAlias(t *testing.T) {
	msg := make([]byte, 3, 64)
	padded := Pad(msg)
	padded[0] = 9
	if msg[0] != 0 {
		t.Fatal("Pad wrote into the caller's slice")
	}
}

func TestUnpadRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"zero length", []byte("abc\x00")},
		{"seventeen", append([]byte("abc"), bytes.Repeat([]byte{17}, 17)...)},
		{"255", []byte{0xff}},
		{"longer than input", []byte{3, 3}},
		{"inconsistent", []byte("abc\x02\x03\x03")},
		{"inconsistent inside", []byte("abc\x04\x04\x05\x04\x04")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := Unpad(tt.in); !errors.Is(err, ErrBadPadding) {
				t.Fatalf("Unpad(%q) = %q, %v; want ErrBadPadding", tt.in, out, err)
			}
		})
	}
	for _, tt := range []struct {
		in, want []byte
	}{
		{[]byte{1}, []byte{}},
		{[]byte("abc\x01"), []byte("abc")},
		{append([]byte("a"), bytes.Repeat([]byte{16}, 16)...), []byte("a")},
	} {
		if got, err := Unpad(tt.in); err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("Unpad(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzUnpad(f *testing.F) {
	for _, seed := range [][]byte{nil, {1}, {0}, {17}, []byte("abc\x03\x03\x03"), []byte("abc\x02\x03\x03"), Pad([]byte("seed"))} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Unpad(in)
		if err != nil {
			if !errors.Is(err, ErrBadPadding) {
				t.Fatalf("error %v is not ErrBadPadding", err)
			}
			return
		}
		n := len(in) - len(out)
		if n < 1 || n > 16 || !bytes.Equal(in[:len(out)], out) {
			t.Fatalf("Unpad(%x) = %x: removed %d bytes", in, out, n)
		}
		for _, c := range in[len(out):] {
			if int(c) != n {
				t.Fatalf("Unpad(%x) accepted inconsistent padding", in)
			}
		}
	})
}

// vectorsDir finds shared/vectors beside an ancestor of the package directory.
func vectorsDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		candidate := filepath.Join(dir, "shared", "vectors")
		if st, err := os.Stat(candidate); err == nil && st.IsDir() {
			return candidate
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("shared/vectors not found beside any ancestor of the package directory")
		}
		dir = parent
	}
}

func TestParticipantHashVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(vectorsDir(t), "phash.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			DeviceJIDs []string `json:"device_jids"`
			PHash      string   `json:"phash"`
		} `json:"vectors"`
	}
	if err = json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("phash.json has no vectors")
	}
	for _, v := range file.Vectors {
		devices := make([]jid.JID, len(v.DeviceJIDs))
		for i, s := range v.DeviceJIDs {
			if devices[i], err = jid.Parse(s); err != nil {
				t.Fatal(err)
			}
		}
		if got := ParticipantHash(devices); got != v.PHash {
			t.Errorf("ParticipantHash(%v) = %s, want %s", v.DeviceJIDs, got, v.PHash)
		}
		// Order of the input does not matter.
		for i, j := 0, len(devices)-1; i < j; i, j = i+1, j-1 {
			devices[i], devices[j] = devices[j], devices[i]
		}
		if got := ParticipantHash(devices); got != v.PHash {
			t.Errorf("reversed %v = %s, want %s", v.DeviceJIDs, got, v.PHash)
		}
	}
}
