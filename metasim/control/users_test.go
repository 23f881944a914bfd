package control_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/control"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

const waitLong = 10 * time.Second

type inbox struct {
	Items []simuser.Item `json:"items"`
	Next  int64          `json:"next"`
}

// createUser makes a simulated WhatsApp user opted in to the test integrator.
func createUser(t testing.TB, env *simtest.Env, number string, devices int) control.UserView {
	t.Helper()
	var v control.UserView
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+" + number, "devices": devices,
		"opt_in": []int{simtest.IntegratorID}, "name": "User " + number}, &v)
	return v
}

func createUserB(b *testing.B, env *simtest.Env) control.UserView {
	return createUser(b, env, "491701111111", 1)
}

func jidOf(v control.UserView) string { return v.JID.String() }

// waitInbox long-polls a user's inbox for the first item of kind after since.
func waitInbox(t *testing.T, env *simtest.Env, user jid.JID, since int64, kind simuser.Kind) (simuser.Item, int64) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for time.Now().Before(deadline) {
		var in inbox
		env.MustCall(t, 200, "GET", "/v1/users/"+user.String()+"/inbox?wait=5s&since="+itoa(since), nil, &in)
		for _, it := range in.Items {
			if it.Kind == kind && (it.Data.Media == nil || it.Data.Media.Status != simuser.MediaPending) {
				return it, in.Next
			}
		}
		since = in.Next
	}
	t.Fatalf("%s received no %s", user, kind)
	return simuser.Item{}, 0
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestCreateUsers(t *testing.T) {
	env := simtest.Start(t)
	v := createUser(t, env, "491701111111", 2)
	if v.JID != jid.New("491701111111", jid.ServerGateway) || len(v.Devices) != 2 || len(v.KeyedDevices) != 2 ||
		len(v.DeviceStatus) != 2 || !v.DeviceStatus[1].Ready || !v.ReadReceipts || len(v.OptIn) != 1 {
		t.Fatalf("created user = %+v", v)
	}
	var m control.UserView
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"fbid": "100001", "read_receipts": false, "eea": true,
		"phone": "+491702222222"}, &m)
	if m.JID.Server != jid.ServerMessenger || m.Network != "messenger" || m.ReadReceipts || m.Phone != "491702222222" {
		t.Fatalf("messenger user = %+v", m)
	}

	path := "/v1/users/" + v.JID.String()
	var added struct {
		Device jid.JID          `json:"device"`
		User   control.UserView `json:"user"`
	}
	env.MustCall(t, 201, "POST", path+"/devices", nil, &added)
	if added.Device != v.JID.WithDevice(2) || len(added.User.DeviceStatus) != 3 {
		t.Fatalf("added device = %+v", added)
	}
	var after control.UserView
	env.MustCall(t, 200, "DELETE", path+"/devices/"+added.Device.String(), nil, &after)
	if len(after.Devices) != 2 || len(after.DeviceStatus) != 2 {
		t.Fatalf("after removing a device = %+v", after)
	}
	env.MustCall(t, 200, "PATCH", path, map[string]any{"auto_read": true}, nil)

	bad := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/v1/users", map[string]any{"number": "+491701111111"}, 409},
		{"POST", "/v1/users", map[string]any{}, 400},
		{"POST", "/v1/users", map[string]any{"number": "+491703333333", "fbid": "1"}, 400},
		{"POST", "/v1/users", map[string]any{"number": "call me"}, 400},
		{"POST", "/v1/users", map[string]any{"fbid": "12ab"}, 400},
		{"POST", "/v1/users", map[string]any{"number": "+491703333333", "network": "messenger"}, 400},
		{"POST", "/v1/users", map[string]any{"number": "+491703333333", "devices": 99}, 400},
		{"POST", "/v1/users", map[string]any{"number": "+491703333333", "opt_in": []int{42}}, 400},
		{"POST", "/v1/users", `{"number": 491703333333}`, 400},
		// A US number cannot opt in while the EEA rule holds.
		{"POST", "/v1/users", map[string]any{"number": "+12125551234", "opt_in": []int{1}}, 403},
		{"POST", path + "/devices", `{"unexpected": 1}`, 400},
		{"DELETE", path + "/devices/" + v.JID.String(), nil, 400},
		{"DELETE", path + "/devices/491709999999:1@s.whatsapp.net", nil, 400},
		{"DELETE", path + "/devices/garbage", nil, 400},
		{"POST", "/v1/users/491709999999@s.whatsapp.net/devices", nil, 404},
	}
	for _, b := range bad {
		var e apiErr
		if code := env.Call(t, b.method, b.path, b.body, &e); code != b.want || e.Code != b.want {
			t.Errorf("%s %s %v = %d %+v, want %d", b.method, b.path, b.body, code, e, b.want)
		}
	}
}

// TestMessaging drives a simulated user through the API against a raw third-party
// client: every content type both ways, typing, receipts, the inbox, blocks, reports
// and an identity reset.
func TestMessaging(t *testing.T) {
	env := simtest.Start(t)
	u := createUser(t, env, "491701111111", 1).JID
	tp := env.StartThirdParty(t, simtest.ThirdPartyOptions{Number: "491701234567", Store: memStore(t, "491701234567")})
	ctx := context.Background()
	path := "/v1/users/" + u.String()

	// Third party → simulated user, read through the long-polled inbox.
	res, err := tp.Acc.SendMessage(ctx, u, "", &waE2E.Message{Conversation: proto.String("hello")}, interop.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	it, next := waitInbox(t, env, u, 0, simuser.KindText)
	if it.ID != res.ID || it.Data.Text != "hello" || it.Data.EncType != "pkmsg" || it.Chat != tp.JID {
		t.Fatalf("inbox item = %+v", it)
	}
	// Media a provider hosts reaches the user through Meta's media proxy, verified.
	plain := bytes.Repeat([]byte("not really a jpeg "), 100)
	var encBlob bytes.Buffer
	key, err := mediacrypt.NewMediaKey()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := mediacrypt.Encrypt(&encBlob, bytes.NewReader(plain), key, mediacrypt.Image)
	if err != nil {
		t.Fatal(err)
	}
	url := env.Provider.Host("/media/1", encBlob.Bytes())
	_, err = tp.Acc.SendMessage(ctx, u, "", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
		Url: proto.String(url), DirectPath: proto.String("/media/1"), Mimetype: proto.String("image/jpeg"),
		MediaKey: key, FileSha256: enc.FileSHA256, FileEncSha256: enc.FileEncSHA256, FileLength: proto.Uint64(enc.FileLength),
	}}, interop.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mit, _ := waitInbox(t, env, u, next, simuser.KindMedia)
	if mi := mit.Data.Media; mi.Status != simuser.MediaOK || mi.Size != int64(len(plain)) ||
		mi.SHA256 != hex.EncodeToString(enc.FileSHA256) || env.Provider.MediaFetches() != 1 {
		t.Fatalf("proxied media = %+v (fetches %d)", mi, env.Provider.MediaFetches())
	}

	start := time.Now()
	var empty inbox
	env.MustCall(t, 200, "GET", path+"/inbox?wait=300ms&kind=text&since="+itoa(next), nil, &empty)
	if len(empty.Items) != 0 || empty.Next != next || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("empty long-poll = %+v after %s", empty, time.Since(start))
	}

	// Simulated user → third party, every kind.
	send := func(body map[string]any) string {
		t.Helper()
		body["to"] = tp.JID.String()
		var sent simuser.Sent
		env.MustCall(t, 200, "POST", path+"/messages", body, &sent)
		if sent.ID == "" || len(sent.Devices) != 1 {
			t.Fatalf("sent = %+v", sent)
		}
		return sent.ID
	}
	next1 := func() *waE2E.Message {
		t.Helper()
		r := tp.Next(t, waitLong)
		if r.Message == nil || r.Info.Chat != u {
			t.Fatalf("third party got %+v", r)
		}
		return r.Message
	}
	first := send(map[string]any{"kind": "text", "text": "*bold* hi @491701234567", "mentions": []string{tp.JID.String()}})
	if m := next1(); m.GetExtendedTextMessage().GetText() != "*bold* hi @491701234567" ||
		len(m.GetExtendedTextMessage().GetContextInfo().GetMentionedJid()) != 1 {
		t.Fatalf("formatted text with mention = %v", m)
	}
	send(map[string]any{"kind": "text", "text": "a reply", "reply_to": map[string]any{"id": res.ID, "sender": tp.JID.String(), "text": "hello"}})
	if ci := next1().GetExtendedTextMessage().GetContextInfo(); ci.GetStanzaId() != res.ID {
		t.Fatalf("reply context = %v", ci)
	}
	send(map[string]any{"kind": "edit", "text": "edited", "target": map[string]any{"id": first}})
	if pm := next1().GetProtocolMessage(); pm.GetType() != waE2E.ProtocolMessage_MESSAGE_EDIT || pm.GetKey().GetId() != first {
		t.Fatalf("edit = %v", pm)
	}
	send(map[string]any{"kind": "reaction", "text": "👍", "target": map[string]any{"id": res.ID, "sender": tp.JID.String()}})
	if r := next1().GetReactionMessage(); r.GetText() != "👍" || r.GetKey().GetId() != res.ID {
		t.Fatalf("reaction = %v", r)
	}
	send(map[string]any{"kind": "revoke", "target": map[string]any{"id": first}})
	if pm := next1().GetProtocolMessage(); pm.GetType() != waE2E.ProtocolMessage_REVOKE {
		t.Fatalf("revoke = %v", pm)
	}
	send(map[string]any{"kind": "location", "location": map[string]any{"latitude": 52.52, "longitude": 13.4, "name": "Berlin"}})
	if l := next1().GetLocationMessage(); l.GetDegreesLatitude() != 52.52 || l.GetName() != "Berlin" {
		t.Fatalf("location = %v", l)
	}
	send(map[string]any{"kind": "image", "text": "a caption", "media": map[string]any{"width": 16, "height": 8}})
	img := next1().GetImageMessage()
	if img.GetCaption() != "a caption" || img.GetDirectPath() == "" || img.GetWidth() != 16 {
		t.Fatalf("image = %v", img)
	}
	// The third party downloads the blob from the host media_conn names, with its
	// token, as section 7 says.
	mc, err := tp.Acc.Client().FetchMediaConn(ctx)
	if err != nil || len(mc.Hosts) != 1 || mc.Hosts[0] != env.Sim.Addrs().Media {
		t.Fatalf("media_conn = %+v, %v; want the media listener %s", mc, err, env.Sim.Addrs().Media)
	}
	blob := download(t, "http://"+mc.Hosts[0]+img.GetDirectPath(), mc.Auth)
	if sum := sha256.Sum256(blob); !bytes.Equal(sum[:], img.GetFileEncSha256()) {
		t.Fatal("the downloaded blob does not match fileEncSha256")
	}
	if len(download(t, "http://"+mc.Hosts[0]+img.GetDirectPath(), "")) != 0 {
		t.Fatal("the media host served a blob without a token")
	}
	doc := []byte("%PDF-1.4 a tiny document")
	send(map[string]any{"kind": "document", "media": map[string]any{"data": base64.StdEncoding.EncodeToString(doc),
		"file_name": "x.pdf", "mimetype": "application/pdf"}})
	if d := next1().GetDocumentMessage(); d.GetFileName() != "x.pdf" || d.GetFileLength() != uint64(len(doc)) {
		t.Fatalf("document = %v", d)
	}
	send(map[string]any{"kind": "voice", "media": map[string]any{"size": 2000, "seconds": 3}})
	if a := next1().GetAudioMessage(); !a.GetPtt() || a.GetSeconds() != 3 {
		t.Fatalf("voice note = %v", a)
	}
	send(map[string]any{"kind": "video", "media": map[string]any{"size": 4000}})
	next1()
	send(map[string]any{"kind": "audio", "media": map[string]any{"size": 1000}})
	next1()

	// Typing and receipts.
	env.MustCall(t, 200, "POST", path+"/typing", map[string]any{"to": tp.JID.String(), "state": "composing"}, nil)
	tp.NextOther(t, waitLong, func(o simtest.Other) bool {
		_, typing := o.Node.Child("composing")
		return o.Kind == "chatstate" && typing
	})
	env.MustCall(t, 200, "POST", path+"/receipts", map[string]any{"chat": tp.JID.String(), "ids": []string{res.ID}}, nil)
	tp.NextOther(t, waitLong, func(o simtest.Other) bool {
		return o.Kind == "receipt" && o.Node.Attr("type") == "read" && o.Node.Attr("id") == res.ID
	})

	// Blocking: messages from a blocked account are accepted and never delivered.
	env.MustCall(t, 200, "POST", path+"/block", map[string]any{"jid": tp.JID.String()}, nil)
	if _, err := tp.Acc.SendMessage(ctx, u, "", &waE2E.Message{Conversation: proto.String("blocked")}, interop.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	var after inbox
	env.MustCall(t, 200, "GET", path+"/inbox?kind=text&wait=500ms&since="+itoa(next), nil, &after)
	if len(after.Items) != 0 {
		t.Fatalf("a blocked account's message arrived: %+v", after.Items)
	}
	env.MustCall(t, 200, "POST", path+"/unblock", map[string]any{"jid": tp.JID.String()}, nil)
	if _, err := tp.Acc.SendMessage(ctx, u, "", &waE2E.Message{Conversation: proto.String("unblocked")}, interop.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if it, _ := waitInbox(t, env, u, next, simuser.KindText); it.Data.Text != "unblocked" {
		t.Fatalf("after unblocking got %+v", it)
	}

	var rep map[string]any
	env.MustCall(t, 200, "POST", path+"/report", map[string]any{"messages": []map[string]any{{"id": res.ID, "from": tp.JID.String()}}}, &rep)
	if rep["reported"] != float64(1) {
		t.Fatalf("report answer = %v", rep)
	}

	// A new identity means a new session: the next message is a pkmsg again.
	env.MustCall(t, 200, "POST", path+"/reset-identity", nil, nil)
	send(map[string]any{"kind": "text", "text": "new phone"})
	if r := tp.Next(t, waitLong); r.EncType != "pkmsg" || r.Message.GetConversation() != "new phone" {
		t.Fatalf("after an identity reset got %+v", r)
	}

	env.MustCall(t, 200, "DELETE", path+"/inbox", nil, nil)
	var cleared inbox
	env.MustCall(t, 200, "GET", path+"/inbox", nil, &cleared)
	if len(cleared.Items) != 0 {
		t.Fatalf("inbox after clearing = %+v", cleared.Items)
	}

	bad := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", path + "/messages", map[string]any{"to": tp.JID.String()}, 400},
		{"POST", path + "/messages", map[string]any{"to": u.String(), "kind": "text", "text": "me"}, 400},
		{"POST", path + "/messages", map[string]any{"to": tp.JID.String(), "kind": "sticker"}, 400},
		{"POST", path + "/messages", map[string]any{"to": tp.JID.String(), "kind": "text"}, 400},
		{"POST", path + "/messages", map[string]any{"to": "nobody", "kind": "text", "text": "x"}, 400},
		{"POST", path + "/messages", map[string]any{"to": tp.JID.String(), "kind": "image", "media": map[string]any{"data": "not base64!"}}, 400},
		{"POST", path + "/messages", map[string]any{"to": tp.JID.String(), "kind": "image", "media": map[string]any{"width": 100000, "height": 1}}, 400},
		{"POST", path + "/messages", map[string]any{"to": tp.JID.String(), "kind": "edit", "text": "x"}, 400},
		{"POST", "/v1/users/491709999999@s.whatsapp.net/messages", map[string]any{"to": tp.JID.String(), "kind": "text", "text": "x"}, 404},
		{"POST", "/v1/users/1-491701234567@interop/messages", map[string]any{"to": u.String(), "kind": "text", "text": "x"}, 400},
		{"POST", path + "/typing", map[string]any{"to": tp.JID.String(), "state": "dancing"}, 400},
		{"POST", path + "/receipts", map[string]any{"chat": tp.JID.String(), "ids": []string{}}, 400},
		{"POST", path + "/receipts", map[string]any{"chat": tp.JID.String(), "ids": []string{"X"}, "type": "seen"}, 400},
		{"POST", path + "/receipts", map[string]any{"chat": "123-1@g.us", "ids": []string{"X"}}, 400},
		{"GET", path + "/inbox?since=-1", nil, 400},
		{"GET", path + "/inbox?wait=1h", nil, 400},
		{"GET", path + "/inbox?chat=nonsense", nil, 400},
		{"GET", path + "/inbox?limit=x", nil, 400},
		{"GET", path + "/inbox?kind=text,bogus", nil, 400},
		{"POST", path + "/block", map[string]any{}, 400},
		{"POST", path + "/report", map[string]any{"messages": []any{}}, 400},
		{"POST", path + "/report", map[string]any{"messages": []map[string]any{{"from": tp.JID.String()}}}, 400},
		{"POST", "/v1/users/491709999999@s.whatsapp.net/reset-identity", nil, 404},
	}
	for _, b := range bad {
		var e apiErr
		if code := env.Call(t, b.method, b.path, b.body, &e); code != b.want || e.Code != b.want {
			t.Errorf("%s %s %v = %d %+v, want %d", b.method, b.path, b.body, code, e, b.want)
		}
	}
}

// download GETs a blob with a bearer token ("" for none); a refusal gives nil.
func download(t *testing.T, url, auth string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	return data
}

// TestSendRefusedByGateway checks a protocol refusal comes back with its code: a
// Meta user may not write to an account of an integrator it has not allowed.
func TestSendRefusedByGateway(t *testing.T) {
	env := simtest.Start(t)
	var v control.UserView
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491701111111"}, &v)
	tp := env.StartThirdParty(t, simtest.ThirdPartyOptions{Number: "491701234567", Store: memStore(t, "491701234567")})
	var e apiErr
	code := env.Call(t, "POST", "/v1/users/"+v.JID.String()+"/messages",
		map[string]any{"to": tp.JID.String(), "kind": "text", "text": "hi"}, &e)
	if code != http.StatusForbidden || e.Code != 403 {
		t.Fatalf("send without opt-in = %d %+v, want 403", code, e)
	}
}
