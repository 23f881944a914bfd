// Package mediacrypt encrypts and decrypts WhatsApp media blobs (PROTOCOL.md section 7):
// HKDF-SHA256 expansion of a 32-byte mediaKey, AES-256-CBC with PKCS#7 padding, and a
// 10-byte truncated HMAC-SHA256 over iv ‖ ciphertext appended to the ciphertext.
//
// Everything streams in constant memory, whatever the size. Decrypt checks the blob's
// size, its SHA-256, its MAC and its padding before it writes a single plaintext byte;
// DecryptToFile (which decrypts while it reads, into a private temporary file it
// deletes on any refusal) and DecryptBytes hold the plaintext back until every check,
// its SHA-256 included, passed.
//
// It does no I/O of its own beyond the readers, writers and temporary files it is given,
// no logging, and imports nothing from the rest of the project (only the standard library
// and golang.org/x/crypto).
package mediacrypt

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"
)

// Sizes fixed by the protocol.
const (
	MediaKeyLength = 32
	MACLength      = 10
	blockSize      = 16
	expandedLength = 112
)

// DefaultMaxBlobSize is the largest blob decryption accepts when Expected.MaxBlobSize is
// unset: the gateway's proxy moves at most 100 MiB per blob (PROTOCOL.md section 7).
const DefaultMaxBlobSize int64 = 100 << 20

// Errors. Each refusal has its own sentinel so callers can tell a corrupted download
// (worth fetching again) from a bad message (not worth it); all wrap with errors.Is.
var (
	ErrUnknownMediaType   = errors.New("unknown media type")
	ErrBadMediaKey        = errors.New("media key must be 32 bytes")
	ErrMissingHash        = errors.New("expected file hashes must be 32 bytes each")
	ErrTooLarge           = errors.New("media blob larger than allowed")
	ErrBadLength          = errors.New("media blob length is not 16·n + 10 with n ≥ 1")
	ErrFileLengthMismatch = errors.New("media blob does not match the expected file length")
	ErrBadMAC             = errors.New("media blob MAC mismatch")
	ErrEncHashMismatch    = errors.New("media blob SHA-256 mismatch")
	ErrBadPadding         = errors.New("media plaintext has invalid PKCS#7 padding")
	ErrFileHashMismatch   = errors.New("media plaintext SHA-256 mismatch")
)

// MediaType selects the HKDF info string. The zero value is invalid on purpose, so a
// forgotten type fails loudly instead of silently deriving image keys.
type MediaType int

const (
	Image MediaType = iota + 1
	Video
	Audio
	Document
)

// ParseMediaType reads the protocol's mediatype attribute. Voice notes ("ptt") use the
// audio keys, so they map to Audio.
func ParseMediaType(s string) (MediaType, error) {
	switch s {
	case "image":
		return Image, nil
	case "video":
		return Video, nil
	case "audio", "ptt":
		return Audio, nil
	case "document":
		return Document, nil
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownMediaType, s)
}

// HKDFInfo is the info string the keys are derived with, or "" for an invalid type.
func (t MediaType) HKDFInfo() string {
	switch t {
	case Image:
		return "WhatsApp Image Keys"
	case Video:
		return "WhatsApp Video Keys"
	case Audio:
		return "WhatsApp Audio Keys"
	case Document:
		return "WhatsApp Document Keys"
	}
	return ""
}

func (t MediaType) String() string {
	switch t {
	case Image:
		return "image"
	case Video:
		return "video"
	case Audio:
		return "audio"
	case Document:
		return "document"
	}
	return fmt.Sprintf("MediaType(%d)", int(t))
}

// Keys are the parts of the expanded media key this protocol uses. The last 32 of the
// 112 expanded bytes (WhatsApp's unused "refKey") are dropped.
type Keys struct {
	IV        [16]byte
	CipherKey [32]byte
	MACKey    [32]byte
}

// ExpandKey derives the IV, AES key and MAC key of one blob.
func ExpandKey(mediaKey []byte, t MediaType) (Keys, error) {
	var k Keys
	if len(mediaKey) != MediaKeyLength {
		return k, fmt.Errorf("%w, got %d", ErrBadMediaKey, len(mediaKey))
	}
	info := t.HKDFInfo()
	if info == "" {
		return k, fmt.Errorf("%w %v", ErrUnknownMediaType, t)
	}
	var out [expandedLength]byte
	if _, err := io.ReadFull(hkdf.New(sha256.New, mediaKey, nil, []byte(info)), out[:]); err != nil {
		return k, fmt.Errorf("failed to expand media key: %w", err)
	}
	copy(k.IV[:], out[0:16])
	copy(k.CipherKey[:], out[16:48])
	copy(k.MACKey[:], out[48:80])
	return k, nil
}

// NewMediaKey returns a fresh random media key. Use one per blob: the IV is derived from
// the key, so reusing a key for two blobs reuses the IV.
func NewMediaKey() ([]byte, error) {
	key := make([]byte, MediaKeyLength)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("failed to generate media key: %w", err)
	}
	return key, nil
}

// Result describes a blob and its plaintext, as a message's media fields carry them.
type Result struct {
	FileSHA256    []byte // SHA-256 of the plaintext
	FileEncSHA256 []byte // SHA-256 of the whole blob, MAC included
	FileLength    uint64 // plaintext bytes
	EncLength     uint64 // blob bytes, MAC included
}

// encLength is the blob size for a plaintext of n bytes: padding always adds 1 to 16
// bytes, then the MAC. The caller keeps n small enough not to overflow.
func encLength(n uint64) uint64 {
	return (n/blockSize+1)*blockSize + MACLength
}
