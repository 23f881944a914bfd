package mediahost

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"abcXYZ019-_", true},
		{strings.Repeat("a", MaxNameLength), true},
		{strings.Repeat("a", MaxNameLength+1), false},
		{"", false},
		{".", false},
		{"..", false},
		{".tmp-0123", false},
		{"a/b", false},
		{"a\\b", false},
		{"%2e%2e", false},
		{"a%2Fb", false},
		{"a b", false},
		{"a\x00b", false},
		{"ä", false},
		{"a=", false},
		{"a+b", false},
	} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// failingReader returns some bytes, then an error: a download that broke off.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestFileStore(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	dir := filepath.Join(parent, "media", "store")
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the store folder exists before any use: %v", err)
	}
	// A file beside the store that no name may reach.
	if err := os.WriteFile(filepath.Join(parent, "secret"), []byte("private"), 0o600); err != nil {
		t.Fatal(err)
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), 10_000)
	n, err := s.Create(ctx, "blob1", bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("create: %d %v", n, err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("store folder %v, %v; want mode 0700", info.Mode(), err)
	}
	if info, err := os.Stat(filepath.Join(dir, "blob1")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("blob file %v, %v; want mode 0600", info.Mode(), err)
	}
	b, err := s.Open(ctx, "blob1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	_ = b.Close()
	if err != nil || !bytes.Equal(got, data) || b.Size() != int64(len(data)) || b.ModTime().IsZero() {
		t.Fatalf("read back %d bytes (size %d), err %v", len(got), b.Size(), err)
	}

	for _, name := range []string{"", ".", "..", "../secret", "..%2Fsecret", "%2e%2e", "/etc/passwd", "a/../../secret", ".tmp-x"} {
		if _, err := s.Create(ctx, name, strings.NewReader("x")); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Create(%q) = %v, want ErrInvalidName", name, err)
		}
		if _, err := s.Open(ctx, name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Open(%q) = %v, want ErrInvalidName", name, err)
		}
		if err := s.Delete(ctx, name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(parent, "secret")); err != nil || string(got) != "private" {
		t.Fatalf("the file beside the store changed: %q %v", got, err)
	}

	if _, err := s.Open(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Fatalf("Delete(missing) = %v", err)
	}

	// A broken-off write or a cancelled one leaves nothing, not even a temporary file.
	if _, err := s.Create(ctx, "broken", &failingReader{n: 100_000}); err == nil {
		t.Fatal("a failing reader was stored")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Create(cancelled, "cancelled", bytes.NewReader(data)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled create: %v", err)
	}
	if names := listDir(t, dir); len(names) != 1 || names[0] != "blob1" {
		t.Fatalf("store holds %v, want only blob1", names)
	}

	if err := s.Delete(ctx, "blob1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, "blob1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Delete = %v", err)
	}

	// What a crash mid-write leaves behind goes once it is old.
	stale := filepath.Join(dir, tempPrefix+"stale")
	fresh := filepath.Join(dir, tempPrefix+"fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(stale, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RemoveStaleTemp(time.Now().Add(-24 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("RemoveStaleTemp = %d, %v", n, err)
	}
	if names := listDir(t, dir); len(names) != 1 || names[0] != tempPrefix+"fresh" {
		t.Fatalf("store holds %v, want only the fresh temporary file", names)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestFileStoreUnusableFolder: a folder that cannot be created fails each use with a
// message naming it, and nothing else.
func TestFileStoreUnusableFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-folder")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileStore(filepath.Join(file, "media"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(context.Background(), "blob", strings.NewReader("x")); err == nil ||
		!strings.Contains(err.Error(), "media store folder "+file) {
		t.Fatalf("Create = %v, want an error naming the folder", err)
	}
	if _, err := s.Open(context.Background(), "blob"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Open = %v, want the folder's error", err)
	}
	if _, err := NewFileStore(""); err == nil {
		t.Fatal("a store without a folder was made")
	}
}
