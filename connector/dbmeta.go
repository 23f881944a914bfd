package connector

import (
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
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
