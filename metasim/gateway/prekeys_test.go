package gateway

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// replaceChild returns a copy of n with the first child of tag replaced (or removed
// when repl is nil).
func replaceChild(n stanza.Node, tag string, repl *stanza.Node) stanza.Node {
	out := n
	out.Content = nil
	var children []stanza.Node
	done := false
	for _, c := range n.Children() {
		if c.Tag == tag && !done {
			done = true
			if repl != nil {
				children = append(children, *repl)
			}
			continue
		}
		children = append(children, c)
	}
	out.Content = children
	return out
}

func bytesNode(tag string, size int) *stanza.Node {
	return &stanza.Node{Tag: tag, Content: make([]byte, size)}
}

// TestSection5_Upload checks the exact sizes of every part of a key upload and the
// signed prekey's signature; anything off is refused with 400 and nothing is stored.
func TestSection5_Upload(t *testing.T) {
	e := newEnv(t)
	c := e.connect("491701234567")
	good := c.uploadIQ(3)
	skey, _ := good.Child("skey")
	list, _ := good.Child("list")
	key := list.Children()[0]
	badSig := replaceChild(skey, "signature", &stanza.Node{Tag: "signature", Content: make([]byte, 64)})
	tests := []struct {
		name string
		iq   stanza.Node
	}{
		{"registration 3 bytes", replaceChild(good, "registration", bytesNode("registration", 3))},
		{"no registration but identity", replaceChild(replaceChild(good, "registration", nil), "type", bytesNode("registration", 4))},
		{"type 0x06", replaceChild(good, "type", &stanza.Node{Tag: "type", Content: []byte{6}})},
		{"type 2 bytes", replaceChild(good, "type", &stanza.Node{Tag: "type", Content: []byte{5, 5}})},
		{"identity 31 bytes", replaceChild(good, "identity", bytesNode("identity", 31))},
		{"identity 33 bytes", replaceChild(good, "identity", bytesNode("identity", 33))},
		{"no skey", replaceChild(good, "skey", nil)},
		{"skey id 2 bytes", replaceChild(good, "skey", ptr(replaceChild(skey, "id", bytesNode("id", 2))))},
		{"skey value 33 bytes", replaceChild(good, "skey", ptr(replaceChild(skey, "value", bytesNode("value", 33))))},
		{"skey signature 63 bytes", replaceChild(good, "skey", ptr(replaceChild(skey, "signature", bytesNode("signature", 63))))},
		{"skey signature wrong", replaceChild(good, "skey", &badSig)},
		{"prekey id 4 bytes", replaceChild(good, "list", &stanza.Node{Tag: "list", Content: []stanza.Node{
			replaceChild(key, "id", bytesNode("id", 4))}})},
		{"prekey value 31 bytes", replaceChild(good, "list", &stanza.Node{Tag: "list", Content: []stanza.Node{
			replaceChild(key, "value", bytesNode("value", 31))}})},
		{"prekey value not base64", replaceChild(good, "list", &stanza.Node{Tag: "list", Content: []stanza.Node{
			replaceChild(key, "value", &stanza.Node{Tag: "value", Content: "%%%"})}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := iqCode(t, c.iq(tt.iq)); code != 400 {
				t.Fatalf("code %d, want 400", code)
			}
		})
	}
	if ok, _ := e.g().st.HasKeys(context.Background(), c.jid); ok {
		t.Fatal("a refused upload stored keys")
	}
	if code := iqCode(t, c.iq(good)); code != 0 {
		t.Fatalf("good upload: %d", code)
	}
	if n := preKeyCount(t, c); n != 3 {
		t.Fatalf("count %d, want 3", n)
	}
}

func ptr[T any](v T) *T { return &v }

func preKeyCount(t *testing.T, c *rawClient) int {
	t.Helper()
	answer := c.iq(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "encrypt"}, Content: []stanza.Node{{Tag: "count"}}})
	count, ok := answer.Child("count")
	if !ok {
		t.Fatalf("count answer %v", answer)
	}
	v, err := strconv.Atoi(count.Attr("value"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func fetchIQ(devices ...jid.JID) stanza.Node {
	users := make([]stanza.Node, 0, len(devices))
	for _, d := range devices {
		users = append(users, stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": d.String()}})
	}
	return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "encrypt"}, Content: []stanza.Node{{Tag: "key", Content: users}}}
}

// fetchOne fetches one device's bundle and returns its node.
func fetchOne(t *testing.T, c *rawClient, d jid.JID) stanza.Node {
	t.Helper()
	answer := c.iq(fetchIQ(d))
	user, ok := answer.Path("list", "user")
	if iqCode(t, answer) != 0 || !ok || user.Attr("jid") != d.String() {
		t.Fatalf("fetch answer %v", answer)
	}
	return user
}

func fetchedPreKeyID(t *testing.T, user stanza.Node) (uint32, bool) {
	t.Helper()
	key, ok := user.Child("key")
	if !ok {
		return 0, false
	}
	id, ok := parseKeyID(key)
	if !ok {
		t.Fatalf("bad key id in %v", key)
	}
	return id, true
}

// TestSection5_Fetch checks bundles: one-time prekeys handed out once each, none when
// they ran out, 404 for unknown devices and for users not opted in, the low-prekey
// notification, and the bundle parsed by the client's strict parser.
func TestSection5_Fetch(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.PreKeyLowWater = 2 })
	ctx := context.Background()
	m := jid.New("491701111111", jid.ServerGateway)
	mustNoErr(t, e.g().CreateUser(ctx, m, UserOptions{}))
	mustNoErr(t, e.g().SetOptIn(ctx, m, integratorID, true))
	mc := e.connectDevice(m)
	mc.uploadKeys(3)
	a := e.connect("491701234567")

	seen := map[uint32]bool{}
	for i := range 3 {
		id, ok := fetchedPreKeyID(t, fetchOne(t, a, m))
		if !ok || seen[id] {
			t.Fatalf("fetch %d: prekey %d (present %v) handed out twice or missing", i, id, ok)
		}
		seen[id] = true
	}
	if _, ok := fetchedPreKeyID(t, fetchOne(t, a, m)); ok {
		t.Fatal("a prekey was handed out after all were used")
	}
	// 3 → 2 is not below the mark, 2 → 1 is, and 0 is told again.
	var counts []string
	for range 2 {
		n := mc.waitFor("prekey notification", isNotification("encrypt"))
		count, _ := n.Child("count")
		counts = append(counts, count.Attr("value"))
		if n.Attr("from") != jid.ServerGateway {
			t.Fatalf("notification from %q", n.Attr("from"))
		}
		mc.ack(n)
	}
	if !slices.Equal(counts, []string{"1", "0"}) {
		t.Fatalf("low prekey notifications %v, want [1 0]", counts)
	}

	mc.uploadKeys(2)
	bundle := fetchOne(t, a, m)
	for _, tag := range []string{"registration", "type", "identity", "skey", "key"} {
		if _, ok := bundle.Child(tag); !ok {
			t.Fatalf("bundle lacks <%s>: %v", tag, bundle)
		}
	}

	// Unknown device, device without keys, user not opted in: all the same 404.
	other := jid.New("491702222222", jid.ServerGateway)
	mustNoErr(t, e.g().CreateUser(ctx, other, UserOptions{}))
	e.connectDevice(other).uploadKeys(2)
	for _, d := range []jid.JID{m.WithDevice(9), jid.New("491709999999", jid.ServerGateway), other} {
		user := fetchOne(t, a, d)
		if errNode, ok := user.Child("error"); !ok || errNode.Attr("code") != "404" {
			t.Fatalf("fetch of %s: %v, want error 404", d, user)
		}
	}
}

// TestSection5_Rotate checks signed prekey rotation: stored when signed by the
// identity, refused with 400 otherwise and with 412 before any upload.
func TestSection5_Rotate(t *testing.T) {
	e := newEnv(t)
	m, mc := e.metaUser("491701111111", UserOptions{})
	a := e.connect("491701234567")
	shift := time.Duration(0)
	rotateIQ := func(c *rawClient, sig bool) stanza.Node {
		shift += 8 * 24 * time.Hour
		spk, err := c.keyManager().RotateSignedPreKey(context.Background(), time.Now().Add(shift))
		if err != nil || spk == nil {
			t.Fatalf("rotate locally: %v %v", spk, err)
		}
		skey, err := interop.SignedPreKeyNode(interop.SignedPreKey{ID: spk.ID, Pub: spk.Public, Signature: spk.Signature})
		mustNoErr(t, err)
		if !sig {
			skey = replaceChild(skey, "signature", bytesNode("signature", 64))
		}
		return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "encrypt"}, Content: []stanza.Node{
			{Tag: "rotate", Content: []stanza.Node{skey}}}}
	}
	if code := iqCode(t, a.iq(rotateIQ(a, true))); code != 412 {
		t.Fatalf("rotation without keys: %d, want 412", code)
	}
	before, _ := fetchOne(t, a, m).Child("skey")
	if code := iqCode(t, mc.iq(rotateIQ(mc, false))); code != 400 {
		t.Fatalf("badly signed rotation: %d, want 400", code)
	}
	rot := rotateIQ(mc, true)
	if code := iqCode(t, mc.iq(rot)); code != 0 {
		t.Fatalf("rotation: %d", code)
	}
	after, _ := fetchOne(t, a, m).Child("skey")
	r, _ := rot.Child("rotate")
	want, _ := r.Child("skey")
	wantID, _ := parseKeyID(want)
	gotID, _ := parseKeyID(after)
	beforeID, _ := parseKeyID(before)
	if gotID != wantID || gotID == beforeID {
		t.Fatalf("skey id %d after rotation, want %d (was %d)", gotID, wantID, beforeID)
	}
}
