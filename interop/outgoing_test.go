package interop

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

func TestClassify(t *testing.T) {
	key := &waE2E.MessageKey{RemoteJid: proto.String(bobJID.String()), Id: proto.String("M1"), FromMe: proto.Bool(true)}
	tests := []struct {
		name string
		msg  *waE2E.Message
		want ContentAttrs
		bad  bool
	}{
		{"conversation", textMsg("hi"), ContentAttrs{Type: "text"}, false},
		{"extended text", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("*hi*")}}, ContentAttrs{Type: "text"}, false},
		{"location", &waE2E.Message{LocationMessage: &waE2E.LocationMessage{DegreesLatitude: proto.Float64(52.5)}}, ContentAttrs{Type: "text"}, false},
		{"image", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{}}, ContentAttrs{Type: "media", MediaType: "image"}, false},
		{"video", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{}}, ContentAttrs{Type: "media", MediaType: "video"}, false},
		{"gif is a video", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{GifPlayback: proto.Bool(true)}}, ContentAttrs{Type: "media", MediaType: "video"}, false},
		{"audio", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{}}, ContentAttrs{Type: "media", MediaType: "audio"}, false},
		{"voice note", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{Ptt: proto.Bool(true)}}, ContentAttrs{Type: "media", MediaType: "ptt"}, false},
		{"document", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{}}, ContentAttrs{Type: "media", MediaType: "document"}, false},
		{"reaction", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Key: key, Text: proto.String("👍")}}, ContentAttrs{Type: "reaction"}, false},
		{"reaction removed", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Key: key, Text: proto.String("")}}, ContentAttrs{Type: "reaction"}, false},
		{"edit", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Key: key, Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), EditedMessage: textMsg("fixed")}},
			ContentAttrs{Type: "text", Edit: "1"}, false},
		{"revoke", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Key: key, Type: waE2E.ProtocolMessage_REVOKE.Enum()}},
			ContentAttrs{Type: "text", Edit: "7"}, false},
		{"edit without content", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Key: key, Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum()}}, ContentAttrs{}, true},
		{"revoke without key", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum()}}, ContentAttrs{}, true},
		{"reaction without key", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Text: proto.String("x")}}, ContentAttrs{}, true},
		{"nil", nil, ContentAttrs{}, true},
		{"empty", &waE2E.Message{}, ContentAttrs{}, true},
		{"caller's distribution", &waE2E.Message{Conversation: proto.String("x"), SenderKeyDistributionMessage: &waE2E.SenderKeyDistributionMessage{}}, ContentAttrs{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Classify(tt.msg)
			if (err != nil) != tt.bad || got != tt.want {
				t.Fatalf("Classify = %+v, %v; want %+v, bad %v", got, err, tt.want, tt.bad)
			}
		})
	}
}

func TestOutgoingMessageNode(t *testing.T) {
	parts := []signal.EncryptedPart{
		{Device: bobJID, Type: "pkmsg", Ciphertext: []byte{1, 2, 3}},
		{Device: bob1JID, Type: "msg", Ciphertext: []byte{4, 5, 6}},
	}
	tests := []struct {
		name string
		m    OutgoingMessage
		want string
	}{
		{"1:1 media edit", OutgoingMessage{ID: "ID1", To: bobJID.String(), Content: ContentAttrs{Type: "media", MediaType: "image", Edit: "1"},
			PHash: "2:S2EGcy", Parts: parts},
			`<message edit="1" id="ID1" phash="2:S2EGcy" to="491701234567@s.whatsapp.net" type="media"><participants>` +
				`<to jid="491701234567@s.whatsapp.net"><enc mediatype="image" type="pkmsg" v="2">AQID</enc></to>` +
				`<to jid="491701234567:1@s.whatsapp.net"><enc mediatype="image" type="msg" v="2">BAUG</enc></to>` +
				`</participants></message>`},
		{"group without distributions", OutgoingMessage{ID: "ID2", To: groupJID.String(), Content: ContentAttrs{Type: "text"}, PHash: "2:x", SKMsg: []byte{9}},
			`<message id="ID2" phash="2:x" to="491701234567-1700000000@g.us" type="text"><enc type="skmsg" v="2">CQ==</enc></message>`},
		{"retry answer", OutgoingMessage{ID: "ID3", To: bobJID.String(), Content: ContentAttrs{Type: "reaction"}, Parts: parts[1:], RetryCount: 2},
			`<message id="ID3" to="491701234567@s.whatsapp.net" type="reaction"><participants>` +
				`<to jid="491701234567:1@s.whatsapp.net"><enc count="2" type="msg" v="2">BAUG</enc></to></participants></message>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustMarshal(t, tt.m.Node()); got != tt.want {
				t.Fatalf("encodes as\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestStaleDevicesRefreshAndResend(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	alice.send(t, bobJID, textMsg("one"))
	bob.receiveText(t, aliceJID, "one")

	// Bob adds a device; nobody tells alice, so her cached list is stale.
	bob1 := startNew(t, gw, bob1JID)
	before := len(gw.sentMessages())
	res := alice.send(t, bobJID, textMsg("two"))
	sent := gw.sentMessages()[before:]
	if len(sent) != 2 {
		t.Fatalf("%d stanzas sent, want the refused one and the resend", len(sent))
	}
	if sent[0].Attr("phash") != vectorPHash(bobJID) || sent[1].Attr("phash") != vectorPHash(bobJID, bob1JID) {
		t.Fatalf("phashes %q then %q", sent[0].Attr("phash"), sent[1].Attr("phash"))
	}
	if sent[0].Attr("id") != res.ID || sent[1].Attr("id") != res.ID {
		t.Fatal("the resend changed the id")
	}
	if !slices.Equal(res.Refusals, []int{409}) || res.Attempts != 2 || !slices.Equal(res.Devices, []jid.JID{bobJID, bob1JID}) {
		t.Fatalf("result %+v", res)
	}
	if got := encTypesFor(sent[1], bob1JID); !slices.Equal(got, []string{"pkmsg"}) {
		t.Fatalf("new device got %v", got)
	}
	bob.receiveText(t, aliceJID, "two")
	bob1.receiveText(t, aliceJID, "two")

	// A devices notification drops the cache too: the next send asks again at once.
	gw.mu.Lock()
	gw.devices[bobJID] = []uint16{0}
	gw.mu.Unlock()
	gw.notify(aliceJID, stanza.Node{Tag: "notification", Attrs: stanza.Attrs{"from": bobJID.String(), "id": "N1", "type": "devices"},
		Content: []stanza.Node{{Tag: "remove", Content: []stanza.Node{{Tag: "device", Attrs: stanza.Attrs{"jid": bob1JID.String()}}}}}})
	waitUntil(t, func() bool { return gw.pendingFor(aliceJID) == 0 })
	res = alice.send(t, bobJID, textMsg("three"))
	if res.Attempts != 1 || !slices.Equal(res.Devices, []jid.JID{bobJID}) {
		t.Fatalf("after the notification: %+v", res)
	}
	bob.receiveText(t, aliceJID, "three")
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRateLimitedWaitsAndResendsSameStanza(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	gw.refuseNext(aliceJID, stanza.Attrs{"error": "429", "retry_after": "7"}, stanza.Attrs{"error": "429"})
	before := len(gw.sentMessages())
	res, err := alice.SendMessage(context.Background(), bobJID, "FIXEDID", textMsg("later"), SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// retry_after first, then the backoff's first step for a 429 without one.
	if got := alice.sleeps.get(); !slices.Equal(got, []time.Duration{7 * time.Second, time.Second}) {
		t.Fatalf("waits %v", got)
	}
	sent := gw.sentMessages()[before:]
	if len(sent) != 3 || res.ID != "FIXEDID" || !slices.Equal(res.Refusals, []int{429, 429}) {
		t.Fatalf("%d sent, result %+v", len(sent), res)
	}
	for _, n := range sent[1:] {
		if mustMarshal(t, n) != mustMarshal(t, sent[0]) {
			t.Fatal("a resend after 429 differs from the refused stanza")
		}
	}
	bob.receiveText(t, aliceJID, "later")
}

func TestRateLimitedUntilContextEnds(t *testing.T) {
	gw := newTestGateway(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waits := 0
	alice := startNew(t, gw, aliceJID, func(c *AccountConfig) {
		c.Retry.MaxAttempts = 1 // bounds 5xx only: a rate-limited message is never dropped
		c.Retry.Sleep = func(ctx context.Context, d time.Duration) error {
			if waits++; waits == 10 {
				cancel()
			}
			return ctx.Err()
		}
	})
	startNew(t, gw, bobJID)
	for range 20 {
		gw.refuseNext(aliceJID, stanza.Attrs{"error": "429", "retry_after": "1"})
	}
	res, err := alice.SendMessage(ctx, bobJID, "", textMsg("x"), SendOptions{})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errcode.ErrRateLimited) || res.Attempts != 10 {
		t.Fatalf("err %v after %d attempts", err, res.Attempts)
	}
}

func TestRefusalsReturnedAtOnce(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	startNew(t, gw, bobJID)
	tests := []struct {
		ack    stanza.Attrs
		want   error
		reason string
	}{
		{stanza.Attrs{"error": "406", "reason": "sticker"}, errcode.ErrNotAcceptable, "sticker"},
		{stanza.Attrs{"error": "403", "reason": "restricted"}, errcode.ErrForbidden, "restricted"},
		{stanza.Attrs{"error": "403", "reason": "not-opted-in"}, errcode.ErrForbidden, "not-opted-in"},
		{stanza.Attrs{"error": "400"}, errcode.ErrMalformed, ""},
		{stanza.Attrs{"error": "401"}, errcode.ErrUnauthorized, ""},
		{stanza.Attrs{"error": "404"}, errcode.ErrNotFound, ""},
		{stanza.Attrs{"error": "413"}, errcode.ErrTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.ack["error"]+tt.reason, func(t *testing.T) {
			gw.refuseNext(aliceJID, tt.ack)
			before := len(gw.sentMessages())
			res, err := alice.SendMessage(context.Background(), bobJID, "", textMsg("x"), SendOptions{})
			var e *errcode.Error
			if !errors.Is(err, tt.want) || !errors.As(err, &e) || e.Reason != tt.reason {
				t.Fatalf("err %v, want %v (%s)", err, tt.want, tt.reason)
			}
			if res.Attempts != 1 || len(gw.sentMessages()) != before+1 || len(alice.sleeps.get()) != 0 {
				t.Fatalf("refusal %s was retried: %+v", tt.ack["error"], res)
			}
		})
	}
}

func TestNoKeysUploadsAndResends(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	gw.forgetKeys(aliceJID)
	res := alice.send(t, bobJID, textMsg("keys?"))
	if !slices.Equal(res.Refusals, []int{412}) || res.Attempts != 2 {
		t.Fatalf("result %+v", res)
	}
	if up := waitEvent[*PreKeysUploaded](t, alice); up.Reason != UploadRefused || up.Count != signal.PreKeyBatch {
		t.Fatalf("upload %+v", up)
	}
	if count, _ := gw.preKeyCount(aliceJID); count != signal.PreKeyBatch {
		t.Fatalf("gateway holds %d prekeys", count)
	}
	bob.receiveText(t, aliceJID, "keys?")
}

func TestGatewayTroubleBacksOff(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID, func(c *AccountConfig) { c.Retry.MaxAttempts = 3 })
	bob := startNew(t, gw, bobJID)
	gw.refuseNext(aliceJID, stanza.Attrs{"error": "503"}, stanza.Attrs{"error": "500"})
	res := alice.send(t, bobJID, textMsg("eventually"))
	if !slices.Equal(res.Refusals, []int{503, 500}) || res.Attempts != 3 {
		t.Fatalf("result %+v", res)
	}
	if got := alice.sleeps.get(); !slices.Equal(got, []time.Duration{time.Second, 2 * time.Second}) {
		t.Fatalf("waits %v, want 1 s doubling", got)
	}
	bob.receiveText(t, aliceJID, "eventually")

	// MaxAttempts (here per message) bounds gateway trouble.
	gw.refuseNext(aliceJID, stanza.Attrs{"error": "500"}, stanza.Attrs{"error": "500"}, stanza.Attrs{"error": "500"})
	res, err := alice.SendMessage(context.Background(), bobJID, "", textMsg("never"), SendOptions{MaxAttempts: 2})
	if !errors.Is(err, errcode.ErrInternal) || res.Attempts != 2 {
		t.Fatalf("err %v, result %+v", err, res)
	}
}

func TestSendValidation(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	ctx := context.Background()
	for name, fn := range map[string]func() error{
		"to a group": func() error { _, err := alice.SendMessage(ctx, groupJID, "", textMsg("x"), SendOptions{}); return err },
		"to nobody":  func() error { _, err := alice.SendMessage(ctx, jid.JID{}, "", textMsg("x"), SendOptions{}); return err },
		"to itself":  func() error { _, err := alice.SendMessage(ctx, aliceJID, "", textMsg("x"), SendOptions{}); return err },
		"empty": func() error {
			_, err := alice.SendMessage(ctx, bobJID, "", &waE2E.Message{}, SendOptions{})
			return err
		},
		"no devices": func() error { _, err := alice.SendMessage(ctx, daveJID, "", textMsg("x"), SendOptions{}); return err },
		"group to user": func() error {
			_, err := alice.SendGroupMessage(ctx, bobJID, []jid.JID{bobJID}, "", textMsg("x"), SendOptions{})
			return err
		},
		"group alone": func() error {
			_, err := alice.SendGroupMessage(ctx, groupJID, []jid.JID{aliceJID}, "", textMsg("x"), SendOptions{})
			return err
		},
	} {
		if err := fn(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := alice.SendMessage(ctx, daveJID, "", textMsg("x"), SendOptions{}); !errors.Is(err, ErrNoDevices) {
		t.Fatalf("send to a user without devices: %v", err)
	}
}

// A send while the connection is down (right after a restart, before the reconnect)
// waits with the backoff for the gateway instead of failing at once; MaxAttempts
// still bounds it.
func TestSendWhileDisconnectedWaits(t *testing.T) {
	gw := newTestGateway(t)
	startNew(t, gw, bobJID)
	alice := startNew(t, gw, aliceJID)
	alice.stop()
	res, err := alice.SendMessage(context.Background(), bobJID, "", textMsg("later"), SendOptions{MaxAttempts: 3})
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("err %v, want ErrNotConnected after the attempts", err)
	}
	if got := alice.sleeps.get(); !slices.Equal(got, []time.Duration{time.Second, 2 * time.Second}) {
		t.Fatalf("waits %v, want 1 s doubling before giving up (result %+v)", got, res)
	}
}
