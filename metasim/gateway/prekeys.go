package gateway

import (
	"context"
	"encoding/binary"
	"strconv"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// Bounds on what one encrypt iq may carry.
const (
	maxPreKeysPerUpload = 1000
	maxFetchDevices     = 1000
)

// handleEncrypt serves the xmlns="encrypt" iqs of section 5: count, upload, fetch
// and signed prekey rotation.
func (s *session) handleEncrypt(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	typ := n.Attr("type")
	switch {
	case typ == "get" && hasChild(n, "count"):
		count, err := s.g.st.CountPreKeys(ctx, s.endpoint)
		if err != nil {
			return nil, s.logFailure(err, "count prekeys")
		}
		return []stanza.Node{{Tag: "count", Attrs: stanza.Attrs{"value": strconv.Itoa(count)}}}, nil
	case typ == "get" && hasChild(n, "key"):
		return s.fetchPreKeys(ctx, n)
	case typ == "set" && hasChild(n, "rotate"):
		return s.rotateSignedPreKey(ctx, n)
	case typ == "set" && hasChild(n, "registration"):
		return s.uploadPreKeys(ctx, n)
	}
	return nil, badRequest("unknown encrypt request")
}

func hasChild(n stanza.Node, tag string) bool {
	_, ok := n.Child(tag)
	return ok
}

// parseKeyID reads the 3-byte big-endian <id> of a key.
func parseKeyID(key stanza.Node) (uint32, bool) {
	b, ok := childBytes(key, "id", 3)
	if !ok {
		return 0, false
	}
	return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]), true
}

// parseSignedPreKey reads <skey><id/><value/><signature/></skey> with its exact sizes.
func parseSignedPreKey(skey stanza.Node) (gwstore.SignedPreKey, bool) {
	var spk gwstore.SignedPreKey
	id, ok := parseKeyID(skey)
	if !ok {
		return spk, false
	}
	pub, ok := childBytes(skey, "value", 32)
	if !ok {
		return spk, false
	}
	sig, ok := childBytes(skey, "signature", 64)
	if !ok {
		return spk, false
	}
	spk.ID = id
	copy(spk.Pub[:], pub)
	copy(spk.Signature[:], sig)
	return spk, true
}

// signatureValid checks the signed prekey's XEdDSA signature by the identity, as
// Meta's key directory does before it hands a bundle out.
func signatureValid(identity [32]byte, spk gwstore.SignedPreKey) (ok bool) {
	defer func() {
		// libsignal is not hardened against hostile keys; a panic is a bad signature.
		if recover() != nil {
			ok = false
		}
	}()
	b := signal.PreKeyBundle{IdentityKey: identity, SignedPreKey: signal.SignedPreKey{
		ID: spk.ID, Public: spk.Pub, Signature: spk.Signature}}
	return b.Verify() == nil
}

// uploadPreKeys stores registration, identity, signed prekey and one-time prekeys,
// each checked for its exact size (section 5).
func (s *session) uploadPreKeys(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	reg, ok := childBytes(n, "registration", 4)
	if !ok {
		return nil, badRequest("<registration> must be 4 bytes")
	}
	if typ, ok := childBytes(n, "type", 1); !ok || typ[0] != signal.KeyType {
		return nil, badRequest("<type> must be the byte 0x05")
	}
	identity, ok := childBytes(n, "identity", 32)
	if !ok {
		return nil, badRequest("<identity> must be 32 bytes")
	}
	skey, ok := n.Child("skey")
	if !ok {
		return nil, badRequest("no <skey>")
	}
	spk, ok := parseSignedPreKey(skey)
	if !ok {
		return nil, badRequest("<skey> needs a 3-byte id, a 32-byte value and a 64-byte signature")
	}
	keys := gwstore.Keys{Registration: binary.BigEndian.Uint32(reg), SignedPreKey: spk, UpdatedAt: s.g.now()}
	copy(keys.Identity[:], identity)
	if !signatureValid(keys.Identity, spk) {
		return nil, badRequest("signed prekey signature does not verify")
	}
	var preKeys []gwstore.PreKey
	if list, ok := n.Child("list"); ok {
		items := list.ChildrenByTag("key")
		if len(items) > maxPreKeysPerUpload {
			return nil, badRequest("too many prekeys in one upload")
		}
		for _, k := range items {
			id, ok := parseKeyID(k)
			pub, okv := childBytes(k, "value", 32)
			if !ok || !okv {
				return nil, badRequest("a <key> needs a 3-byte id and a 32-byte value")
			}
			pk := gwstore.PreKey{ID: id}
			copy(pk.Pub[:], pub)
			preKeys = append(preKeys, pk)
		}
	}
	s.g.keyMu.Lock()
	res, err := s.g.st.PutKeys(ctx, s.endpoint, keys, preKeys)
	s.g.keyMu.Unlock()
	if err != nil {
		return nil, s.logFailure(err, "store keys")
	}
	s.log.Debug().Int("prekeys", len(preKeys)).Int("held", res.Count).Bool("first", res.First).
		Bool("identity_changed", res.IdentityChanged).Msg("Keys uploaded")
	if res.First && !s.thirdParty {
		s.g.announceDevices(ctx, s.user(), "add", s.endpoint)
	}
	if res.IdentityChanged {
		s.g.announceIdentity(ctx, s.user())
	}
	return nil, nil
}

// rotateSignedPreKey replaces the device's signed prekey.
func (s *session) rotateSignedPreKey(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	rotate, _ := n.Child("rotate")
	skey, ok := rotate.Child("skey")
	if !ok {
		return nil, badRequest("no <skey> in <rotate>")
	}
	spk, ok := parseSignedPreKey(skey)
	if !ok {
		return nil, badRequest("<skey> needs a 3-byte id, a 32-byte value and a 64-byte signature")
	}
	s.g.keyMu.Lock()
	defer s.g.keyMu.Unlock()
	keys, err := s.g.st.GetKeys(ctx, s.endpoint)
	if isNotFound(err) {
		return nil, &iqError{code: 412, text: "no keys uploaded"}
	} else if err != nil {
		return nil, s.logFailure(err, "read keys")
	}
	if !signatureValid(keys.Identity, spk) {
		return nil, badRequest("signed prekey signature does not verify")
	}
	if err := s.g.st.SetSignedPreKey(ctx, s.endpoint, spk, s.g.now()); err != nil {
		return nil, s.logFailure(err, "rotate signed prekey")
	}
	return nil, nil
}

// fetchPreKeys hands out bundles, each with one one-time prekey that is never handed
// out again. Unknown devices, devices without keys and devices of users this endpoint
// may not reach all get the same 404, so a fetch cannot tell them apart.
func (s *session) fetchPreKeys(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	key, _ := n.Child("key")
	users := key.ChildrenByTag("user")
	if len(users) == 0 || len(users) > maxFetchDevices {
		return nil, badRequest("<key> must list 1-1000 devices")
	}
	devices := make([]jid.JID, 0, len(users))
	seen := make(map[jid.JID]bool, len(users))
	for _, u := range users {
		d, err := jid.Parse(u.Attr("jid"))
		if err != nil || d.User == "" || d.IsGroup() {
			return nil, badRequest("<user jid> is not a device")
		}
		if !seen[d] {
			seen[d] = true
			devices = append(devices, d)
		}
	}
	out := make([]stanza.Node, 0, len(devices))
	for _, d := range devices {
		bundle, err := s.bundle(ctx, d)
		if err != nil {
			return nil, s.logFailure(err, "fetch keys")
		}
		out = append(out, bundle)
	}
	return []stanza.Node{{Tag: "list", Content: out}}, nil
}

func (s *session) bundle(ctx context.Context, d jid.JID) (stanza.Node, error) {
	notFound := stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": d.String()},
		Content: []stanza.Node{{Tag: "error", Attrs: stanza.Attrs{"code": "404", "text": "no keys"}}}}
	if d.ToUser() != s.user() {
		ok, err := s.g.reachable(ctx, s.user(), d.ToUser())
		if err != nil || !ok {
			return notFound, err
		}
	}
	s.g.keyMu.Lock()
	keys, err := s.g.st.GetKeys(ctx, d)
	if err != nil {
		s.g.keyMu.Unlock()
		if isNotFound(err) {
			return notFound, nil
		}
		return stanza.Node{}, err
	}
	pk, left, err := s.g.st.PopPreKey(ctx, d)
	s.g.keyMu.Unlock()
	if err != nil {
		return stanza.Node{}, err
	}
	skey, err := interop.SignedPreKeyNode(interop.SignedPreKey{ID: keys.SignedPreKey.ID, Pub: keys.SignedPreKey.Pub,
		Signature: keys.SignedPreKey.Signature})
	if err != nil {
		return stanza.Node{}, err
	}
	children := []stanza.Node{interop.RegistrationNode(keys.Registration), interop.KeyTypeNode(),
		interop.IdentityNode(keys.Identity), skey}
	if pk != nil {
		node, err := interop.PreKeyNode(interop.PreKey{ID: pk.ID, Pub: pk.Pub})
		if err != nil {
			return stanza.Node{}, err
		}
		children = append(children, node)
		low := s.g.cfg.Limits.PreKeyLowWater
		// Told once when the count falls under the mark and again when it runs out.
		if (left < low && left+1 >= low) || left == 0 {
			s.g.notifyPreKeysLow(ctx, d, left)
		}
	}
	return stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": d.String()}, Content: children}, nil
}
