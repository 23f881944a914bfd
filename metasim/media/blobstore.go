package media

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// directPathPrefix is the start of every directPath, in the shape of WhatsApp's own
// ("/v/t62.7118-24/…"); the rest is 32 random bytes in hex, so paths cannot be guessed.
const (
	directPathPrefix = "/v/t62.7118-24/"
	directPathSuffix = ".enc"
	blobNameLength   = 64
)

// newBlobName makes the random part of a directPath.
func newBlobName() (string, error) {
	var b [blobNameLength / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("failed to make blob name: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func directPathOf(name string) string { return directPathPrefix + name + directPathSuffix }

// blobNameOf returns the blob name of a directPath, or false when the path is not one
// this host could have made (so no request can reach outside the blob store).
func blobNameOf(directPath string) (string, bool) {
	rest, ok := strings.CutPrefix(directPath, directPathPrefix)
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, directPathSuffix)
	if !ok || len(name) != blobNameLength {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return name, true
}

// blobReader is an open blob.
type blobReader interface {
	io.ReaderAt
	io.Closer
}

// blobStore keeps blobs by name.
type blobStore interface {
	// put stores what r yields under name; more than limit bytes is ErrBlobTooLarge and
	// stores nothing.
	put(name string, r io.Reader, limit int64) (int64, error)
	open(name string) (blobReader, int64, error)
	remove(name string) error
}

// memBlobs keeps blobs in memory (the simulator's in-memory mode and tests).
type memBlobs struct {
	mu    sync.RWMutex
	blobs map[string][]byte
}

func newMemBlobs() *memBlobs { return &memBlobs{blobs: make(map[string][]byte)} }

func (m *memBlobs) put(name string, r io.Reader, limit int64) (int64, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return 0, fmt.Errorf("failed to read upload: %w", err)
	}
	if int64(len(data)) > limit {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrBlobTooLarge, limit)
	}
	m.mu.Lock()
	m.blobs[name] = data
	m.mu.Unlock()
	return int64(len(data)), nil
}

type nopCloserAt struct{ *bytes.Reader }

func (nopCloserAt) Close() error { return nil }

func (m *memBlobs) open(name string) (blobReader, int64, error) {
	m.mu.RLock()
	data, ok := m.blobs[name]
	m.mu.RUnlock()
	if !ok {
		return nil, 0, ErrNotFound
	}
	return nopCloserAt{bytes.NewReader(data)}, int64(len(data)), nil
}

func (m *memBlobs) remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[name]; !ok {
		return ErrNotFound
	}
	delete(m.blobs, name)
	return nil
}

// diskBlobs keeps blobs as files in one directory. An upload is written to a
// temporary file and renamed into place, so a blob is either whole or absent.
type diskBlobs struct{ dir string }

func newDiskBlobs(dir string) (*diskBlobs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create blob directory: %w", err)
	}
	return &diskBlobs{dir: dir}, nil
}

func (d *diskBlobs) put(name string, r io.Reader, limit int64) (_ int64, err error) {
	tmp, err := os.CreateTemp(d.dir, ".upload-*")
	if err != nil {
		return 0, fmt.Errorf("failed to create upload file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, io.LimitReader(r, limit+1))
	if err != nil {
		return 0, fmt.Errorf("failed to write upload: %w", err)
	}
	if n > limit {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrBlobTooLarge, limit)
	}
	if err = tmp.Sync(); err != nil {
		return 0, fmt.Errorf("failed to sync upload: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return 0, fmt.Errorf("failed to close upload: %w", err)
	}
	if err = os.Rename(tmp.Name(), filepath.Join(d.dir, name)); err != nil {
		return 0, fmt.Errorf("failed to store upload: %w", err)
	}
	return n, nil
}

func (d *diskBlobs) open(name string) (blobReader, int64, error) {
	f, err := os.Open(filepath.Join(d.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNotFound
	} else if err != nil {
		return nil, 0, fmt.Errorf("failed to open blob: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("failed to stat blob: %w", err)
	}
	return f, info.Size(), nil
}

func (d *diskBlobs) remove(name string) error {
	err := os.Remove(filepath.Join(d.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	} else if err != nil {
		return fmt.Errorf("failed to remove blob: %w", err)
	}
	return nil
}
