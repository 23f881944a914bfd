package interop

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// Prekey bookkeeping numbers of PROTOCOL.md section 5.
const (
	PreKeyUploadBatch = 50 // one-time prekeys per upload
	PreKeyLowWater    = 10 // upload more when fewer remain
	MaxPreKeyID       = 1<<24 - 1
	// keyTypeDJB is the Signal type byte of a Curve25519 key.
	keyTypeDJB = 0x05
)

// PreKey is a one-time prekey's public half.
type PreKey struct {
	ID  uint32 // at most MaxPreKeyID: it travels as 3 bytes
	Pub [32]byte
}

// SignedPreKey is the signed prekey's public half and its XEdDSA signature.
type SignedPreKey struct {
	ID        uint32 // at most MaxPreKeyID
	Pub       [32]byte
	Signature [64]byte
}

// PreKeyUpload is everything an upload carries.
type PreKeyUpload struct {
	RegistrationID uint32
	Identity       [32]byte // the identity public key, without the type byte
	PreKeys        []PreKey
	SignedPreKey   SignedPreKey
}

// FetchedBundle is one device's keys from a fetch, or Err (an *errcode.Error, e.g.
// 404) when the gateway had none.
type FetchedBundle struct {
	Device         jid.JID
	RegistrationID uint32
	Identity       [32]byte
	SignedPreKey   SignedPreKey
	PreKey         *PreKey // nil when the device has no one-time prekeys left
	Err            error
}

// PreKeyCount asks how many one-time prekeys the gateway still holds.
func (c *Client) PreKeyCount(ctx context.Context) (int, error) {
	answer, err := c.SendIQ(ctx, encryptIQ("get", stanza.Node{Tag: "count"}))
	if err != nil {
		return 0, fmt.Errorf("failed to get the prekey count: %w", err)
	}
	return parsePreKeyCount(answer)
}

// UploadPreKeys uploads the identity, the signed prekey and one-time prekeys.
func (c *Client) UploadPreKeys(ctx context.Context, u PreKeyUpload) error {
	iq, err := buildPreKeyUpload(u)
	if err != nil {
		return err
	}
	if _, err := c.SendIQ(ctx, iq); err != nil {
		return fmt.Errorf("failed to upload prekeys: %w", err)
	}
	return nil
}

// RotateSignedPreKey replaces the signed prekey on the gateway.
func (c *Client) RotateSignedPreKey(ctx context.Context, spk SignedPreKey) error {
	skey, err := SignedPreKeyNode(spk)
	if err != nil {
		return err
	}
	iq := encryptIQ("set", stanza.Node{Tag: "rotate", Content: []stanza.Node{skey}})
	if _, err := c.SendIQ(ctx, iq); err != nil {
		return fmt.Errorf("failed to rotate the signed prekey: %w", err)
	}
	return nil
}

// FetchPreKeys fetches the key bundles of devices. The map holds one entry per device
// the answer names; a device with Err set has no keys (404 for an unknown one).
func (c *Client) FetchPreKeys(ctx context.Context, devices []jid.JID) (map[jid.JID]FetchedBundle, error) {
	iq, err := buildPreKeyFetch(devices)
	if err != nil {
		return nil, err
	}
	answer, err := c.SendIQ(ctx, iq)
	if err != nil {
		return nil, fmt.Errorf("failed to fetch prekeys: %w", err)
	}
	return parsePreKeyFetch(answer, devices)
}

func encryptIQ(typ string, children ...stanza.Node) stanza.Node {
	return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": typ, "xmlns": "encrypt", "to": jid.ServerGateway}, Content: children}
}

// RegistrationNode is <registration> with the id as 4 big-endian bytes.
func RegistrationNode(id uint32) stanza.Node {
	return stanza.Node{Tag: "registration", Content: binary.BigEndian.AppendUint32(nil, id)}
}

// KeyTypeNode is <type> with the one byte 0x05.
func KeyTypeNode() stanza.Node { return stanza.Node{Tag: "type", Content: []byte{keyTypeDJB}} }

// IdentityNode is <identity> with the 32-byte public key.
func IdentityNode(pub [32]byte) stanza.Node {
	return stanza.Node{Tag: "identity", Content: pub[:]}
}

// PreKeyNode is <key><id/><value/></key>.
func PreKeyNode(k PreKey) (stanza.Node, error) {
	id, err := keyID(k.ID)
	if err != nil {
		return stanza.Node{}, err
	}
	return stanza.Node{Tag: "key", Content: []stanza.Node{id, {Tag: "value", Content: k.Pub[:]}}}, nil
}

// SignedPreKeyNode is <skey><id/><value/><signature/></skey>.
func SignedPreKeyNode(k SignedPreKey) (stanza.Node, error) {
	id, err := keyID(k.ID)
	if err != nil {
		return stanza.Node{}, err
	}
	return stanza.Node{Tag: "skey", Content: []stanza.Node{id, {Tag: "value", Content: k.Pub[:]},
		{Tag: "signature", Content: k.Signature[:]}}}, nil
}

func keyID(id uint32) (stanza.Node, error) {
	if id > MaxPreKeyID {
		return stanza.Node{}, fmt.Errorf("prekey id %d does not fit in 3 bytes", id)
	}
	return stanza.Node{Tag: "id", Content: []byte{byte(id >> 16), byte(id >> 8), byte(id)}}, nil
}

func buildPreKeyUpload(u PreKeyUpload) (stanza.Node, error) {
	list := make([]stanza.Node, 0, len(u.PreKeys))
	for _, k := range u.PreKeys {
		n, err := PreKeyNode(k)
		if err != nil {
			return stanza.Node{}, err
		}
		list = append(list, n)
	}
	skey, err := SignedPreKeyNode(u.SignedPreKey)
	if err != nil {
		return stanza.Node{}, err
	}
	return encryptIQ("set",
		RegistrationNode(u.RegistrationID),
		KeyTypeNode(),
		IdentityNode(u.Identity),
		stanza.Node{Tag: "list", Content: list},
		skey,
	), nil
}

func parsePreKeyCount(answer stanza.Node) (int, error) {
	count, ok := answer.Child("count")
	if !ok {
		return 0, fmt.Errorf("prekey count answer has no <count>")
	}
	v, err := count.AttrInt("value")
	if err != nil || v < 0 || v > MaxPreKeyID {
		return 0, fmt.Errorf("prekey count answer has a bad value %q", count.Attr("value"))
	}
	return int(v), nil
}

func buildPreKeyFetch(devices []jid.JID) (stanza.Node, error) {
	if len(devices) == 0 {
		return stanza.Node{}, fmt.Errorf("no devices to fetch keys for")
	}
	users := make([]stanza.Node, 0, len(devices))
	for _, d := range devices {
		if d.User == "" {
			return stanza.Node{}, fmt.Errorf("cannot fetch keys for %q: not a device", d)
		}
		users = append(users, stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": d.String()}})
	}
	return encryptIQ("get", stanza.Node{Tag: "key", Content: users}), nil
}

func parsePreKeyFetch(answer stanza.Node, asked []jid.JID) (map[jid.JID]FetchedBundle, error) {
	list, ok := answer.Child("list")
	if !ok {
		return nil, fmt.Errorf("prekey fetch answer has no <list>")
	}
	wanted := make(map[jid.JID]bool, len(asked))
	for _, d := range asked {
		wanted[d] = true
	}
	out := make(map[jid.JID]FetchedBundle, len(asked))
	for _, user := range list.ChildrenByTag("user") {
		b, err := parseBundle(user)
		if err != nil {
			return nil, fmt.Errorf("malformed prekey fetch answer: %w", err)
		}
		if !wanted[b.Device] {
			return nil, fmt.Errorf("malformed prekey fetch answer: %s was not asked for", b.Device)
		}
		if _, dup := out[b.Device]; dup {
			return nil, fmt.Errorf("malformed prekey fetch answer: %s twice", b.Device)
		}
		out[b.Device] = b
	}
	return out, nil
}

func parseBundle(user stanza.Node) (FetchedBundle, error) {
	device, err := jid.Parse(user.Attr("jid"))
	if err != nil {
		return FetchedBundle{}, err
	}
	b := FetchedBundle{Device: device}
	if e, ok := user.Child("error"); ok {
		b.Err = errcode.Parse(e.Attr("code"), e.Attr("text"), e.Attr("reason"), "")
		return b, nil
	}
	reg, err := fixedChild(user, "registration", 4)
	if err != nil {
		return b, err
	}
	b.RegistrationID = binary.BigEndian.Uint32(reg)
	typ, err := fixedChild(user, "type", 1)
	if err != nil {
		return b, err
	}
	if typ[0] != keyTypeDJB {
		return b, fmt.Errorf("%s: key type 0x%02x, want 0x05", device, typ[0])
	}
	identity, err := fixedChild(user, "identity", 32)
	if err != nil {
		return b, err
	}
	copy(b.Identity[:], identity)

	skey, ok := user.Child("skey")
	if !ok {
		return b, fmt.Errorf("%s: no <skey>", device)
	}
	if b.SignedPreKey.ID, err = parseKeyID(skey); err != nil {
		return b, err
	}
	if err := copyChild(b.SignedPreKey.Pub[:], skey, "value"); err != nil {
		return b, err
	}
	if err := copyChild(b.SignedPreKey.Signature[:], skey, "signature"); err != nil {
		return b, err
	}
	if key, ok := user.Child("key"); ok {
		pk := &PreKey{}
		if pk.ID, err = parseKeyID(key); err != nil {
			return b, err
		}
		if err := copyChild(pk.Pub[:], key, "value"); err != nil {
			return b, err
		}
		b.PreKey = pk
	}
	return b, nil
}

// fixedChild returns the bytes of a child that must be exactly size bytes long.
func fixedChild(parent stanza.Node, tag string, size int) ([]byte, error) {
	child, ok := parent.Child(tag)
	if !ok {
		return nil, fmt.Errorf("<%s> has no <%s>", parent.Tag, tag)
	}
	if len(child.Children()) > 0 {
		return nil, fmt.Errorf("<%s> holds elements, want %d bytes", tag, size)
	}
	b, err := child.Bytes()
	if err != nil {
		return nil, err
	}
	if len(b) != size {
		return nil, fmt.Errorf("<%s> is %d bytes, want %d", tag, len(b), size)
	}
	return b, nil
}

func copyChild(dst []byte, parent stanza.Node, tag string) error {
	b, err := fixedChild(parent, tag, len(dst))
	if err != nil {
		return err
	}
	copy(dst, b)
	return nil
}

func parseKeyID(parent stanza.Node) (uint32, error) {
	b, err := fixedChild(parent, "id", 3)
	if err != nil {
		return 0, err
	}
	return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]), nil
}
