package mediahost

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"
)

// Refusals of a Store. Branch with errors.Is.
var (
	// ErrInvalidName: the name is not one a store accepts (see ValidName); nothing on
	// disk was touched.
	ErrInvalidName = errors.New("invalid media blob name")
	// ErrNotFound: no blob has that name.
	ErrNotFound = errors.New("media blob not found")
)

// MaxNameLength bounds a blob name. Hosting's names are 43 characters.
const MaxNameLength = 128

// tempPrefix starts the names of files being written. A dot is never in a valid name,
// so a half-written file can neither be opened nor overwritten through the Store.
const tempPrefix = ".tmp-"

// Store keeps blobs by name. Names are checked with ValidName before anything else;
// an implementation may be a folder (FileStore) or an object store. Safe for concurrent
// use.
type Store interface {
	// Create stores everything read from r under name and returns its size. The blob
	// appears whole or not at all: readers never see a partial blob, and a failed
	// Create leaves nothing behind. An existing blob of that name is replaced.
	Create(ctx context.Context, name string, r io.Reader) (int64, error)
	// Open opens a blob for reading; ErrNotFound when there is none.
	Open(ctx context.Context, name string) (Blob, error)
	// Delete removes a blob; deleting one that does not exist is not an error.
	Delete(ctx context.Context, name string) error
}

// Blob is an opened blob: seekable, so that http.ServeContent can answer Range requests.
type Blob interface {
	io.ReadSeekCloser
	Size() int64
	ModTime() time.Time
}

// ValidName reports whether name may be a blob name: 1 to MaxNameLength characters of
// the URL-safe base64 alphabet (A-Z, a-z, 0-9, '-', '_'). That excludes every path
// trick by construction: no dot, slash, backslash, percent sign, NUL or space.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

func checkName(name string) error {
	if !ValidName(name) {
		// %.40q: enough to recognize a bad caller, never a huge or binary log line.
		return fmt.Errorf("%w: %.40q", ErrInvalidName, name)
	}
	return nil
}

// FileStore keeps blobs as files in one folder, through an os.Root: even a name that
// slipped past ValidName could not reach outside the folder. The folder is created
// (mode 0700) and opened on first use, so a bridge that never hosts media leaves no
// folder behind; a failure to create it is reported by that use and retried by the
// next one.
type FileStore struct {
	dir  string
	mu   sync.Mutex
	root *os.Root
}

var _ Store = (*FileStore)(nil)

// NewFileStore makes a store on the folder dir.
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("no media store folder configured")
	}
	return &FileStore{dir: dir}, nil
}

// Dir is the folder of the store.
func (s *FileStore) Dir() string { return s.dir }

// Close releases the folder.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.root == nil {
		return nil
	}
	err := s.root.Close()
	s.root = nil
	return err
}

// open returns the folder, creating and opening it on first use.
func (s *FileStore) open() (*os.Root, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.root != nil {
		return s.root, nil
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create the media store folder %s: %w", s.dir, err)
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return nil, fmt.Errorf("failed to open the media store folder %s: %w", s.dir, err)
	}
	s.root = root
	return root, nil
}

// copyBufferSize is the size of Create's writes: few system calls, and still a small
// share of the memory a send may use.
const copyBufferSize = 256 << 10

// writebackEvery is how much of a blob is written before its writeback is started.
const writebackEvery = 4 << 20

// Create writes r to a temporary file (mode 0600) in the folder, syncs it and renames
// it to name, so the blob appears whole or not at all.
func (s *FileStore) Create(ctx context.Context, name string, r io.Reader) (size int64, err error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	root, err := s.open()
	if err != nil {
		return 0, err
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	tmp := tempPrefix + hex.EncodeToString(rnd[:])
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("failed to create a temporary file in the media store %s: %w", s.dir, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	w := &writebackWriter{f: f}
	size, err = io.CopyBuffer(w, ctxReader{ctx: ctx, r: r}, make([]byte, copyBufferSize))
	if err != nil {
		return 0, fmt.Errorf("failed to write a blob to the media store %s: %w", s.dir, err)
	}
	// The sync is what makes "whole or not at all" hold across a power loss: without
	// it the renamed file may come back empty or cut short. Writeback was started as
	// the blob was written, so it waits only for the last few MiB.
	if err = syncData(f); err != nil {
		return 0, fmt.Errorf("failed to sync a blob in the media store %s: %w", s.dir, err)
	}
	if err = f.Close(); err != nil {
		return 0, fmt.Errorf("failed to close a blob in the media store %s: %w", s.dir, err)
	}
	if err = root.Rename(tmp, name); err != nil {
		return 0, fmt.Errorf("failed to rename a blob in the media store %s: %w", s.dir, err)
	}
	return size, nil
}

// Open opens the file name for reading.
func (s *FileStore) Open(_ context.Context, name string) (Blob, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	root, err := s.open()
	if err != nil {
		return nil, err
	}
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("failed to open a blob in the media store %s: %w", s.dir, err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("failed to stat a blob in the media store %s: %w", s.dir, err)
	}
	if !info.Mode().IsRegular() {
		_ = f.Close()
		return nil, ErrNotFound
	}
	return &fileBlob{File: f, info: info}, nil
}

// Delete removes the file name.
func (s *FileStore) Delete(_ context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	root, err := s.open()
	if err != nil {
		return err
	}
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to delete a blob from the media store %s: %w", s.dir, err)
	}
	return nil
}

// RemoveStaleTemp deletes temporary files older than before: what a crash in the middle
// of a Create leaves behind. It returns how many it removed.
func (s *FileStore) RemoveStaleTemp(before time.Time) (int, error) {
	root, err := s.open()
	if err != nil {
		return 0, err
	}
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return 0, fmt.Errorf("failed to list the media store %s: %w", s.dir, err)
	}
	removed := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(before) {
			continue
		}
		if err := root.Remove(e.Name()); err == nil {
			removed++
		}
	}
	return removed, nil
}

type fileBlob struct {
	*os.File
	info fs.FileInfo
}

func (b *fileBlob) Size() int64        { return b.info.Size() }
func (b *fileBlob) ModTime() time.Time { return b.info.ModTime() }

// writebackWriter writes a new file from its start and starts the writeback of each
// writebackEvery bytes as soon as they are written, so that the disk writes while the
// rest of the blob arrives instead of all at the final sync.
type writebackWriter struct {
	f              *os.File
	written, start int64
}

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.start >= writebackEvery {
		startWriteback(w.f, w.start, w.written-w.start)
		w.start = w.written
	}
	return n, err
}

// ctxReader stops a copy once ctx is done, so a cancelled send does not keep writing.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
