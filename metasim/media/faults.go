package media

import (
	"fmt"
	"io"
	"sync"
)

// Fault is something wrong the media hosts do on purpose, so that a receiver's
// refusal paths can be exercised (PROTOCOL.md section 7: receivers check both hashes
// and the MAC before using a byte).
type Fault int

const (
	FaultNone Fault = iota
	// FaultCorrupt serves the blob with one byte flipped: the MAC and fileEncSha256 no
	// longer match.
	FaultCorrupt
	// FaultTruncate serves the blob without its last byte: a different length, and not
	// 16·n + 10 any more.
	FaultTruncate
	// FaultExtend serves 16 zero bytes more than the blob: a well-formed length that
	// fails the declared file length, the MAC and the hash.
	FaultExtend
	// FaultUnavailable answers 503 to every request, as a host that is down.
	FaultUnavailable
)

var faultNames = map[Fault]string{
	FaultNone: "none", FaultCorrupt: "corrupt", FaultTruncate: "truncate", FaultExtend: "extend",
	FaultUnavailable: "unavailable",
}

// extendBy is how many bytes FaultExtend appends: one AES block, so the length stays
// 16·n + 10.
const extendBy = 16

func (f Fault) String() string {
	if s, ok := faultNames[f]; ok {
		return s
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// ParseFault reads a fault's name ("none", "corrupt", "truncate", "extend",
// "unavailable"), for the control API.
func ParseFault(s string) (Fault, error) {
	for f, name := range faultNames {
		if name == s {
			return f, nil
		}
	}
	return FaultNone, fmt.Errorf("unknown media fault %q", s)
}

// MarshalText lets faults travel as their names in JSON.
func (f Fault) MarshalText() ([]byte, error) {
	if _, ok := faultNames[f]; !ok {
		return nil, fmt.Errorf("unknown media fault %d", int(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText reads a fault's name.
func (f *Fault) UnmarshalText(b []byte) error {
	v, err := ParseFault(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// faultSet holds the faults per directPath; the empty path is every blob's.
type faultSet struct {
	mu     sync.RWMutex
	faults map[string]Fault
}

func (fs *faultSet) set(directPath string, f Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.faults == nil {
		fs.faults = make(map[string]Fault)
	}
	if f == FaultNone {
		delete(fs.faults, directPath)
	} else {
		fs.faults[directPath] = f
	}
}

func (fs *faultSet) clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.faults = nil
}

// get returns the fault for a directPath: its own, else the one for every blob.
func (fs *faultSet) get(directPath string) Fault {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	if f, ok := fs.faults[directPath]; ok {
		return f
	}
	return fs.faults[""]
}

// serveAs applies a content fault to a blob of size bytes and returns what to serve.
func serveAs(f Fault, blob io.ReaderAt, size int64) *io.SectionReader {
	switch f {
	case FaultCorrupt:
		if size > 0 {
			return io.NewSectionReader(&flippedAt{ReaderAt: blob, pos: size / 2}, 0, size)
		}
	case FaultTruncate:
		if size > 0 {
			return io.NewSectionReader(blob, 0, size-1)
		}
	case FaultExtend:
		return io.NewSectionReader(&paddedAt{ReaderAt: blob, size: size}, 0, size+extendBy)
	}
	return io.NewSectionReader(blob, 0, size)
}

// flippedAt reads like ReaderAt with the byte at pos inverted.
type flippedAt struct {
	io.ReaderAt
	pos int64
}

func (r *flippedAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.ReaderAt.ReadAt(p, off)
	if r.pos >= off && r.pos < off+int64(n) {
		p[r.pos-off] ^= 0xff
	}
	return n, err
}

// paddedAt reads like ReaderAt (of size bytes) followed by zero bytes.
type paddedAt struct {
	io.ReaderAt
	size int64
}

func (r *paddedAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < r.size {
		want := p
		if int64(len(want)) > r.size-off {
			want = want[:r.size-off]
		}
		got, err := r.ReaderAt.ReadAt(want, off)
		n = got
		if got < len(want) {
			return n, err
		}
	}
	for i := n; i < len(p); i++ {
		p[i] = 0
	}
	return len(p), nil
}
