package connector

import (
	"fmt"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
)

// UserLoginMetadata is kept as JSON in bridgev2's user_login table. The login ID holds
// the network and account too; these copies make the row readable on its own and are
// checked against the ID when the login is loaded.
type UserLoginMetadata struct {
	Network ids.Network `json:"network"`
	// Number is the E.164 number without "+", the user part of InteropJID.
	Number     string  `json:"number"`
	InteropJID jid.JID `json:"interop_jid"`
	// Verification records how the Matrix user proved they own Number.
	Verification Verification `json:"verification"`
}

// MessageMetadata is kept as JSON in bridgev2's message table.
type MessageMetadata struct {
	// Undecryptable marks the notice that stands in for a message that did not
	// decrypt; the real message replaces it when it arrives.
	Undecryptable bool `json:"undecryptable,omitempty"`
	// DirectMedia is where the attachment of a message bridged as a direct media URI
	// is on Meta's media hosts and how to check it (directmedia.go); nil for anything
	// uploaded to the homeserver.
	DirectMedia *DirectMediaInfo `json:"direct_media,omitempty"`
}

// DirectMediaInfo is what a direct media download needs from the message that carried
// the attachment. It holds the media key, so it lives only in the bridge's database,
// never in the media ID, and is never logged.
type DirectMediaInfo struct {
	// Type is the media type the keys are derived for: image, video, audio or document.
	Type          string `json:"type"`
	DirectPath    string `json:"direct_path,omitempty"`
	URL           string `json:"url,omitempty"`
	MediaKey      []byte `json:"media_key"`
	FileSHA256    []byte `json:"file_sha256"`
	FileEncSHA256 []byte `json:"file_enc_sha256"`
	FileLength    uint64 `json:"file_length,omitempty"`
	Mimetype      string `json:"mimetype,omitempty"`
	FileName      string `json:"file_name,omitempty"`
}

// directMediaInfo keeps what a later download of m needs.
func directMediaInfo(m *msgconv.IncomingMedia) *DirectMediaInfo {
	return &DirectMediaInfo{Type: m.Type.String(), DirectPath: m.DirectPath, URL: m.URL, MediaKey: m.MediaKey,
		FileSHA256: m.FileSHA256, FileEncSHA256: m.FileEncSHA256, FileLength: m.FileLength,
		Mimetype: m.Mimetype, FileName: m.FileName}
}

// incoming is the attachment again, as the fetcher reads it.
func (d *DirectMediaInfo) incoming() (*msgconv.IncomingMedia, error) {
	t, err := mediacrypt.ParseMediaType(d.Type)
	if err != nil {
		return nil, fmt.Errorf("failed to read stored media type: %w", err)
	}
	return &msgconv.IncomingMedia{Type: t, DirectPath: d.DirectPath, URL: d.URL, MediaKey: d.MediaKey,
		FileSHA256: d.FileSHA256, FileEncSHA256: d.FileEncSHA256, FileLength: d.FileLength,
		Mimetype: d.Mimetype, FileName: d.FileName}, nil
}
