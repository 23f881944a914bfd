package interop

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func fill32(v byte) (a [32]byte) {
	for i := range a {
		a[i] = v
	}
	return a
}

func fill64(v byte) (a [64]byte) {
	for i := range a {
		a[i] = v
	}
	return a
}

func mustMarshal(t *testing.T, n stanza.Node) string {
	t.Helper()
	b, err := stanza.Marshal(n)
	if err != nil {
		t.Fatalf("failed to encode: %v", err)
	}
	return string(b)
}

func mustUnmarshal(t *testing.T, s string) stanza.Node {
	t.Helper()
	n, err := stanza.Unmarshal([]byte(s))
	if err != nil {
		t.Fatalf("failed to decode %q: %v", s, err)
	}
	return n
}

func TestPreKeyUploadEncoding(t *testing.T) {
	u := PreKeyUpload{
		RegistrationID: 0x01020304,
		Identity:       fill32(0x11),
		PreKeys:        []PreKey{{ID: 1, Pub: fill32(0x22)}, {ID: 0xABCDEF, Pub: fill32(0x33)}},
		SignedPreKey:   SignedPreKey{ID: 0x000100, Pub: fill32(0x44), Signature: fill64(0x55)},
	}
	iq, err := buildPreKeyUpload(u)
	if err != nil {
		t.Fatal(err)
	}
	want := `<iq to="s.whatsapp.net" type="set" xmlns="encrypt">` +
		`<registration>AQIDBA==</registration>` + // 01 02 03 04
		`<type>BQ==</type>` + // 05
		`<identity>` + b64(bytes.Repeat([]byte{0x11}, 32)) + `</identity>` +
		`<list>` +
		`<key><id>AAAB</id><value>` + b64(bytes.Repeat([]byte{0x22}, 32)) + `</value></key>` + // 00 00 01
		`<key><id>q83v</id><value>` + b64(bytes.Repeat([]byte{0x33}, 32)) + `</value></key>` + // AB CD EF
		`</list>` +
		`<skey><id>AAEA</id><value>` + b64(bytes.Repeat([]byte{0x44}, 32)) + `</value>` + // 00 01 00
		`<signature>` + b64(bytes.Repeat([]byte{0x55}, 64)) + `</signature></skey>` +
		`</iq>`
	if got := mustMarshal(t, iq); got != want {
		t.Fatalf("upload encodes as\n%s\nwant\n%s", got, want)
	}

	for _, bad := range []PreKeyUpload{
		{PreKeys: []PreKey{{ID: 1 << 24}}},
		{SignedPreKey: SignedPreKey{ID: 1 << 24}},
	} {
		if _, err := buildPreKeyUpload(bad); err == nil {
			t.Fatal("a prekey id over 3 bytes was accepted")
		}
	}
}

func TestRotateAndCountEncoding(t *testing.T) {
	skey, err := SignedPreKeyNode(SignedPreKey{ID: 7, Pub: fill32(1), Signature: fill64(2)})
	if err != nil {
		t.Fatal(err)
	}
	got := mustMarshal(t, encryptIQ("set", stanza.Node{Tag: "rotate", Content: []stanza.Node{skey}}))
	want := `<iq to="s.whatsapp.net" type="set" xmlns="encrypt"><rotate><skey><id>AAAH</id><value>` +
		b64(bytes.Repeat([]byte{1}, 32)) + `</value><signature>` + b64(bytes.Repeat([]byte{2}, 64)) +
		`</signature></skey></rotate></iq>`
	if got != want {
		t.Fatalf("rotate encodes as\n%s\nwant\n%s", got, want)
	}
	if got := mustMarshal(t, encryptIQ("get", stanza.Node{Tag: "count"})); got != `<iq to="s.whatsapp.net" type="get" xmlns="encrypt"><count/></iq>` {
		t.Fatalf("count encodes as %s", got)
	}
}

func TestParsePreKeyCount(t *testing.T) {
	tests := []struct {
		answer string
		want   int
		ok     bool
	}{
		{`<iq type="result"><count value="42"/></iq>`, 42, true},
		{`<iq type="result"><count value="0"/></iq>`, 0, true},
		{`<iq type="result"/>`, 0, false},
		{`<iq type="result"><count/></iq>`, 0, false},
		{`<iq type="result"><count value="-1"/></iq>`, 0, false},
		{`<iq type="result"><count value="many"/></iq>`, 0, false},
	}
	for _, tt := range tests {
		got, err := parsePreKeyCount(mustUnmarshal(t, tt.answer))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: got %d, %v", tt.answer, got, err)
		}
	}
}

func TestPreKeyFetch(t *testing.T) {
	alice0 := jid.MustParse("491701234567@s.whatsapp.net")
	alice3 := jid.MustParse("491701234567:3@s.whatsapp.net")
	bob := jid.MustParse("491709999999@s.whatsapp.net")
	iq, err := buildPreKeyFetch([]jid.JID{alice0, alice3, bob})
	if err != nil {
		t.Fatal(err)
	}
	wantReq := `<iq to="s.whatsapp.net" type="get" xmlns="encrypt"><key>` +
		`<user jid="491701234567@s.whatsapp.net"/><user jid="491701234567:3@s.whatsapp.net"/>` +
		`<user jid="491709999999@s.whatsapp.net"/></key></iq>`
	if got := mustMarshal(t, iq); got != wantReq {
		t.Fatalf("fetch encodes as\n%s\nwant\n%s", got, wantReq)
	}

	user := func(j string, extra string, withKey bool) string {
		s := `<user jid="` + j + `"><registration>AQIDBA==</registration><type>BQ==</type>` +
			`<identity>` + b64(bytes.Repeat([]byte{9}, 32)) + `</identity>` +
			`<skey><id>AAAC</id><value>` + b64(bytes.Repeat([]byte{8}, 32)) + `</value>` +
			`<signature>` + b64(bytes.Repeat([]byte{7}, 64)) + `</signature></skey>`
		if withKey {
			s += `<key><id>AQAA</id><value>` + b64(bytes.Repeat([]byte{6}, 32)) + `</value></key>`
		}
		return s + extra + `</user>`
	}
	good := `<iq type="result"><list>` + user("491701234567@s.whatsapp.net", "", true) +
		user("491701234567:3@s.whatsapp.net", "", false) +
		`<user jid="491709999999@s.whatsapp.net"><error code="404" text="not found"/></user></list></iq>`
	got, err := parsePreKeyFetch(mustUnmarshal(t, good), []jid.JID{alice0, alice3, bob})
	if err != nil {
		t.Fatal(err)
	}
	a := got[alice0]
	if a.Err != nil || a.RegistrationID != 0x01020304 || a.Identity != fill32(9) ||
		a.SignedPreKey.ID != 2 || a.SignedPreKey.Pub != fill32(8) || a.SignedPreKey.Signature != fill64(7) ||
		a.PreKey == nil || a.PreKey.ID != 0x010000 || a.PreKey.Pub != fill32(6) {
		t.Fatalf("alice's bundle: %+v", a)
	}
	if a3 := got[alice3]; a3.Err != nil || a3.PreKey != nil || a3.Device != alice3 {
		t.Fatalf("alice:3 without one-time prekey: %+v", a3)
	}
	if !errors.Is(got[bob].Err, errcode.ErrNotFound) {
		t.Fatalf("bob: %+v", got[bob])
	}

	malformed := map[string]string{
		"no list":         `<iq type="result"/>`,
		"bad jid":         `<iq type="result"><list>` + user("nobody", "", true) + `</list></iq>`,
		"not asked":       `<iq type="result"><list>` + user("4912@s.whatsapp.net", "", true) + `</list></iq>`,
		"twice":           `<iq type="result"><list>` + user("491709999999@s.whatsapp.net", "", true) + user("491709999999@s.whatsapp.net", "", true) + `</list></iq>`,
		"short identity":  strings.Replace(good, b64(bytes.Repeat([]byte{9}, 32)), b64(bytes.Repeat([]byte{9}, 31)), 1),
		"wrong type":      strings.Replace(good, "<type>BQ==</type>", "<type>Bg==</type>", 1),
		"no registration": strings.Replace(good, "<registration>AQIDBA==</registration>", "", 1),
		"bad base64":      strings.Replace(good, "AQIDBA==", "AQID!A==", 1),
		"long key id":     strings.Replace(good, "<id>AQAA</id>", "<id>AQAAAA==</id>", 1),
		"no signature":    strings.Replace(good, "<signature>"+b64(bytes.Repeat([]byte{7}, 64))+"</signature>", "", 1),
		"nested value":    strings.Replace(good, "<id>AAAC</id>", "<id><x/></id>", 1),
	}
	for name, answer := range malformed {
		if _, err := parsePreKeyFetch(mustUnmarshal(t, answer), []jid.JID{alice0, alice3, bob}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := buildPreKeyFetch(nil); err == nil {
		t.Fatal("empty fetch accepted")
	}
}

// Through a connection: the helper sends the iq and reads the answer.
func TestPreKeyHelpersOverConnection(t *testing.T) {
	tc := startClient(t, fastConfig())
	gw := tc.connect(t)
	ctx := context.Background()

	done := make(chan error, 1)
	go func() {
		n, err := tc.PreKeyCount(ctx)
		if err == nil && n != 5 {
			err = errors.New("wrong count")
		}
		done <- err
	}()
	req := gw.recv()
	if req.Attr("xmlns") != "encrypt" || req.Attr("type") != "get" {
		t.Fatalf("count request %v", req.Attrs)
	}
	gw.send(mustUnmarshal(t, `<iq id="`+req.Attr("id")+`" type="result" from="s.whatsapp.net"><count value="5"/></iq>`))
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	go func() { done <- tc.UploadPreKeys(ctx, PreKeyUpload{RegistrationID: 1}) }()
	req = gw.recv()
	gw.send(withID(iqError("412", "", ""), req.Attr("id")))
	if err := <-done; !errors.Is(err, errcode.ErrNoKeys) {
		t.Fatalf("upload refused: %v", err)
	}
}

func withID(n stanza.Node, id string) stanza.Node {
	n.Attrs["id"] = id
	return n
}
