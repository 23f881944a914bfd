package signal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// maxPadding is the largest padding a receiver accepts (PROTOCOL.md section 3.3).
const maxPadding = 16

// Pad appends 1-16 random-length padding bytes, each equal to the length, to a copy of
// msg. Padding hides the exact length of short messages.
func Pad(msg []byte) []byte {
	var b [1]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; fixed padding is still valid.
		b[0] = 0
	}
	n := int(b[0]&0x0f) + 1
	out := make([]byte, len(msg), len(msg)+n)
	copy(out, msg)
	for range n {
		out = append(out, byte(n))
	}
	return out
}

// Unpad removes the padding added by Pad. It refuses empty input, a padding length of
// 0 or over 16 or longer than the input, and padding bytes that differ.
func Unpad(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty plaintext", ErrBadPadding)
	}
	n := int(b[len(b)-1])
	if n == 0 || n > maxPadding || n > len(b) {
		return nil, fmt.Errorf("%w: length %d", ErrBadPadding, n)
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, fmt.Errorf("%w: inconsistent bytes", ErrBadPadding)
		}
	}
	return b[:len(b)-n], nil
}

// ParticipantHash is the phash of PROTOCOL.md section 3.3: "2:" and the first 6
// characters of the standard base64 of SHA-256 over the device JIDs, sorted in
// ascending byte order and concatenated.
func ParticipantHash(devices []jid.JID) string {
	strs := make([]string, len(devices))
	for i, d := range devices {
		strs[i] = d.String()
	}
	slices.Sort(strs)
	h := sha256.New()
	for _, s := range strs {
		h.Write([]byte(s))
	}
	return "2:" + base64.StdEncoding.EncodeToString(h.Sum(nil))[:6]
}

// unpadAndHandle removes the padding of a decrypted plaintext and gives it to the
// caller's handler, marking the handler's own failure as a HandleError.
func unpadAndHandle(ctx context.Context, plaintext []byte, handle HandleFunc) error {
	unpadded, err := Unpad(plaintext)
	if err != nil {
		return err
	}
	if err = handle(ctx, unpadded); err != nil {
		return &HandleError{Err: err}
	}
	return nil
}
