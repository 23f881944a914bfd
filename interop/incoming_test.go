package interop

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
)

func TestDuplicateAckedWithoutSecondDeliver(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	for i, text := range []string{"first, a pkmsg", "second, a msg"} {
		gw.mu.Lock()
		gw.dupNext[bobJID] = true
		gw.mu.Unlock()
		if i == 1 {
			bob.send(t, aliceJID, textMsg("ack the session"))
			alice.receiveText(t, bobJID, "ack the session")
		}
		alice.send(t, bobJID, textMsg(text))
		bob.receiveText(t, aliceJID, text)
		if h := bob.nextHandled(t); h.err != nil || h.outcome != OutcomeDuplicate {
			t.Fatalf("repeat handled as %+v", h)
		}
		select {
		case d := <-bob.delivered:
			t.Fatalf("repeat delivered again: %+v", d.m)
		case <-time.After(20 * time.Millisecond):
		}
		waitUntil(t, func() bool { return gw.pendingFor(bobJID) == 0 })
	}
}

func TestDeliverErrorLeavesUnackedAndRedelivers(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	for _, text := range []string{"pkmsg that fails once", "msg that fails once"} {
		bob.failDeliver.Store(1)
		alice.send(t, bobJID, textMsg(text))
		if d := bob.nextDelivery(t); !d.failed || d.m.Message.GetConversation() != text {
			t.Fatalf("first deliver %+v", d)
		}
		if h := bob.nextHandled(t); h.err == nil {
			t.Fatal("a failed deliver was not reported")
		}
		time.Sleep(20 * time.Millisecond)
		if n := gw.pendingFor(bobJID); n != 1 {
			t.Fatalf("%d stanzas pending, want the failed one unacked", n)
		}
		// The ratchet step rolled back with the delivery: the redelivery decrypts.
		gw.drop(bobJID)
		bob.receiveText(t, aliceJID, text)
		waitUntil(t, func() bool { return gw.pendingFor(bobJID) == 0 })
	}
}

func TestRetryReceiptRecovery(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)

	gw.corruptNext(bobJID, "pkmsg", 1)
	res := alice.send(t, bobJID, textMsg("lost in transit"))
	d := bob.nextDelivery(t)
	if u := d.m.Undecryptable; u == nil || u.RetryReceipts != 1 || u.GaveUp || d.m.Info.ID != res.ID || !signal.IsDecryptError(u.Err) {
		t.Fatalf("undecryptable notice %+v", d.m)
	}
	if h := bob.nextHandled(t); h.err != nil || h.outcome != OutcomeUndecryptable {
		t.Fatalf("handled %+v", h)
	}
	waitUntil(t, func() bool { return len(gw.sentReceipts()) > 0 })
	receipt := lastReceipt(t, gw)
	retry, _ := receipt.Child("retry")
	if receipt.Attr("to") != aliceJID.String() || receipt.Attr("type") != "retry" || receipt.Attr("id") != res.ID ||
		retry.Attr("count") != "1" || retry.Attr("v") != "1" || retry.Attr("id") != res.ID {
		t.Fatalf("retry receipt %s %v / %v", receipt, receipt.Attrs, retry.Attrs)
	}
	if _, hasKeys := receipt.Child("keys"); hasKeys {
		t.Fatal("first retry receipt carries keys")
	}

	m := bob.receiveText(t, aliceJID, "lost in transit")
	if m.Info.ID != res.ID || m.RetryCount != 1 {
		t.Fatalf("resend %+v", m)
	}
	answer := lastSent(t, gw)
	if answer.HasAttr("phash") || answer.Attr("id") != res.ID {
		t.Fatalf("retry answer attrs %v", answer.Attrs)
	}
	parts, _ := answer.Child("participants")
	if tos := parts.ChildrenByTag("to"); len(tos) != 1 || tos[0].Attr("jid") != bobJID.String() {
		t.Fatalf("retry answer addressed to %v", tos)
	}
	if evt := waitEvent[*RetryAnswered](t, alice); evt.Err != nil || evt.Count != 1 || evt.Device != bobJID {
		t.Fatalf("retry event %+v", evt)
	}
	waitUntil(t, func() bool { return gw.pendingFor(bobJID) == 0 && gw.pendingFor(aliceJID) == 0 })
}

func TestRetryReceiptWithKeysStartsNewSession(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	alice.send(t, bobJID, textMsg("hello"))
	bob.receiveText(t, aliceJID, "hello")
	bob.send(t, aliceJID, textMsg("hello back"))
	alice.receiveText(t, bobJID, "hello back")

	// The message and the first answer are both damaged; the second receipt brings keys.
	gw.corruptNext(bobJID, "msg", 2)
	res := alice.send(t, bobJID, textMsg("third time lucky"))
	for count := 1; count <= 2; count++ {
		d := bob.nextDelivery(t)
		if u := d.m.Undecryptable; u == nil || u.RetryReceipts != count {
			t.Fatalf("attempt %d: %+v", count, d.m)
		}
		bob.nextHandled(t)
	}
	m := bob.receiveText(t, aliceJID, "third time lucky")
	if m.RetryCount != 2 || m.EncType != signal.TypePreKeyMessage || m.Info.ID != res.ID {
		t.Fatalf("second answer %+v", m)
	}
	receipts := gw.sentReceipts()
	if _, ok := receipts[len(receipts)-1].Child("keys"); !ok {
		t.Fatal("second retry receipt has no keys")
	}
	enc, _ := lastSent(t, gw).Path("participants", "to", "enc")
	if enc.Attr("count") != "2" || enc.Attr("type") != "pkmsg" {
		t.Fatalf("second answer enc %v", enc.Attrs)
	}
	// The new session works both ways afterwards.
	bob.send(t, aliceJID, textMsg("fine now"))
	alice.receiveText(t, bobJID, "fine now")
}

func TestRetriesStopAfterFive(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	gw.corruptNext(bobJID, "pkmsg", 100)
	alice.send(t, bobJID, textMsg("never readable"))
	for count := 1; count <= signal.MaxRetries+1; count++ {
		d := bob.nextDelivery(t)
		u := d.m.Undecryptable
		if u == nil || u.GaveUp != (count > signal.MaxRetries) || u.RetryReceipts != min(count, signal.MaxRetries) {
			t.Fatalf("attempt %d: %+v", count, u)
		}
	}
	waitUntil(t, func() bool { return gw.pendingFor(bobJID) == 0 })
	if n := len(gw.sentReceipts()); n != signal.MaxRetries {
		t.Fatalf("%d retry receipts, want %d", n, signal.MaxRetries)
	}
	for range signal.MaxRetries {
		if evt := waitEvent[*RetryAnswered](t, alice); evt.Err != nil {
			t.Fatalf("answer failed: %v", evt.Err)
		}
	}

	// A sixth receipt is acked and ignored.
	reg := RegistrationNode(1)
	gw.notify(aliceJID, stanza.Node{Tag: "receipt", Attrs: stanza.Attrs{"from": bobJID.String(), "id": "X", "type": "retry"},
		Content: []stanza.Node{{Tag: "retry", Attrs: stanza.Attrs{"count": "6", "id": "X", "v": "1"}}, reg}})
	if evt := waitEvent[*RetryAnswered](t, alice); !errors.Is(evt.Err, signal.ErrTooManyRetries) {
		t.Fatalf("sixth retry: %+v", evt)
	}
	waitUntil(t, func() bool { return gw.pendingFor(aliceJID) == 0 })
}

func TestMalformedMessageReportedAndAcked(t *testing.T) {
	gw := newTestGateway(t)
	bob := startNew(t, gw, bobJID)
	gw.notify(bobJID, stanza.Node{Tag: "message", Attrs: stanza.Attrs{"from": aliceJID.String(), "id": "BAD1", "type": "text"},
		Content: []stanza.Node{{Tag: "enc", Attrs: stanza.Attrs{"v": "1", "type": "msg"}, Content: []byte{1}}}})
	d := bob.nextDelivery(t)
	if u := d.m.Undecryptable; u == nil || !u.GaveUp || d.m.Info.ID != "BAD1" {
		t.Fatalf("notice %+v", d.m)
	}
	if h := bob.nextHandled(t); h.outcome != OutcomeMalformed || h.err != nil {
		t.Fatalf("handled %+v", h)
	}
	waitUntil(t, func() bool { return gw.pendingFor(bobJID) == 0 })
}

func TestIdentityChanges(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	alice.send(t, bobJID, textMsg("hi"))
	bob.receiveText(t, aliceJID, "hi")

	// The gateway announces a new identity: sessions go, the user is told.
	gw.notify(aliceJID, stanza.Node{Tag: "notification", Attrs: stanza.Attrs{"from": bobJID.String(), "id": "N1", "type": "encrypt"},
		Content: []stanza.Node{{Tag: "identity"}}})
	if evt := waitEvent[*SafetyNumberChanged](t, alice); evt.User != bobJID || !evt.Device.IsEmpty() {
		t.Fatalf("event %+v", evt)
	}
	if ok, _ := alice.Signal().HasSession(context.Background(), bobJID); ok {
		t.Fatal("session survived the identity notification")
	}
	waitUntil(t, func() bool { return gw.pendingFor(aliceJID) == 0 })

	// Bob reinstalls under the same JID with new keys; alice still has his old session.
	alice.send(t, bobJID, textMsg("again"))
	bob.receiveText(t, aliceJID, "again")
	// The old install acks "again" before it goes; otherwise the gateway redelivers it
	// to the new one, which cannot decrypt it (seen once under load).
	waitUntil(t, func() bool { return gw.pendingFor(bobJID) == 0 })
	bob.stop()
	acc, err := memstore.NewAccount(bobJID)
	if err != nil {
		t.Fatal(err)
	}
	gw.forgetKeys(bobJID)
	newBob := startAccountOn(t, gw, memstore.New(acc))
	waitEvent[*PreKeysUploaded](t, newBob)
	if err := alice.Signal().DeleteSession(context.Background(), bobJID); err != nil {
		t.Fatal(err)
	}
	res := alice.send(t, bobJID, textMsg("who are you now"))
	if !slices.Equal(res.IdentityChanged, []jid.JID{bobJID}) {
		t.Fatalf("result %+v", res)
	}
	if evt := waitEvent[*SafetyNumberChanged](t, alice); evt.Device != bobJID {
		t.Fatalf("event %+v", evt)
	}
	newBob.receiveText(t, aliceJID, "who are you now")
}

func lastReceipt(t testing.TB, gw *testGateway) stanza.Node {
	t.Helper()
	r := gw.sentReceipts()
	if len(r) == 0 {
		t.Fatal("no receipt sent")
	}
	return r[len(r)-1]
}

func TestParseIncoming(t *testing.T) {
	good := mustUnmarshal(t, `<message from="491701234567-1700000000@g.us" id="M1" notify="Bob" participant="491701234567:1@s.whatsapp.net" t="1700000001" type="media">`+
		`<enc type="skmsg" v="2" mediatype="image">AQ==</enc><enc count="2" type="pkmsg" v="2">Ag==</enc></message>`)
	info, err := ParseMessageInfo(good)
	want := MessageInfo{ID: "M1", Chat: groupJID, Sender: bob1JID, IsGroup: true, Timestamp: time.Unix(1700000001, 0), Type: "media", PushName: "Bob"}
	if err != nil || !reflect.DeepEqual(info, want) {
		t.Fatalf("info %+v, %v", info, err)
	}
	encs, err := ParseEncs(good, true)
	wantEncs := []IncomingEnc{{Type: "pkmsg", Count: 2, Ciphertext: []byte{2}}, {Type: "skmsg", MediaType: "image", Ciphertext: []byte{1}}}
	if err != nil || !reflect.DeepEqual(encs, wantEncs) {
		t.Fatalf("encs %+v, %v (1:1 first)", encs, err)
	}
	direct, err := ParseMessageInfo(mustUnmarshal(t, `<message from="491701234567:1@s.whatsapp.net" id="M2"><enc type="msg" v="2">AQ==</enc></message>`))
	if err != nil || direct.Chat != bobJID || direct.Sender != bob1JID || direct.IsGroup {
		t.Fatalf("1:1 info %+v, %v", direct, err)
	}

	badInfo := []string{
		`<message from="491701234567@s.whatsapp.net"/>`,
		`<message id="x"/>`,
		`<message from="nobody" id="x"/>`,
		`<message from="1-2@g.us" id="x"/>`,
		`<message from="1-2@g.us" id="x" participant="3-4@g.us"/>`,
		`<message from="491701234567@s.whatsapp.net" id="x" t="soon"/>`,
		`<receipt from="491701234567@s.whatsapp.net" id="x"/>`,
	}
	for _, s := range badInfo {
		if _, err := ParseMessageInfo(mustUnmarshal(t, s)); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
	badEncs := []string{
		`<message/>`,
		`<message><enc type="msg" v="3">AQ==</enc></message>`,
		`<message><enc type="msg" v="2"></enc></message>`,
		`<message><enc type="msg" v="2">!!</enc></message>`,
		`<message><enc type="frank" v="2">AQ==</enc></message>`,
		`<message><enc type="skmsg" v="2">AQ==</enc></message>`, // not a group
		`<message><enc type="msg" v="2">AQ==</enc><enc type="pkmsg" v="2">AQ==</enc></message>`,
		`<message><enc count="-1" type="msg" v="2">AQ==</enc></message>`,
	}
	for _, s := range badEncs {
		if _, err := ParseEncs(mustUnmarshal(t, s), false); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

func TestRetryReceiptRoundTrip(t *testing.T) {
	ctx := context.Background()
	acc, err := memstore.NewAccount(bobJID)
	if err != nil {
		t.Fatal(err)
	}
	m := signal.New(memstore.New(acc), zerolog.Nop())
	for _, tt := range []struct {
		name  string
		info  MessageInfo
		count int
	}{
		{"1:1 first", MessageInfo{ID: "M1", Chat: aliceJID, Sender: aliceJID, Timestamp: time.Unix(1700000000, 0)}, 1},
		{"group with keys", MessageInfo{ID: "M2", Chat: groupJID, Sender: aliceJID, IsGroup: true, Timestamp: time.Unix(1700000000, 0)}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rr, err := m.BuildRetryReceipt(ctx, tt.count)
			if err != nil {
				t.Fatal(err)
			}
			n, err := BuildRetryReceiptNode(tt.info, tt.count, rr, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			// What the gateway delivers to the sender: from/participant swapped.
			n.Attrs["from"] = bobJID.String()
			if tt.info.IsGroup {
				n.Attrs["from"], n.Attrs["participant"] = groupJID.String(), bobJID.String()
			}
			req, err := ParseRetryReceipt(mustUnmarshal(t, mustMarshal(t, n)))
			if err != nil {
				t.Fatal(err)
			}
			want := signal.RetryRequest{Device: bobJID, Chat: tt.info.Chat, MessageID: tt.info.ID, Count: tt.count,
				RegistrationID: acc.RegistrationID, Keys: rr.Keys}
			if !tt.info.IsGroup {
				want.Chat = bobJID
			}
			if !reflect.DeepEqual(req, want) {
				t.Fatalf("parsed %+v\nwant %+v", req, want)
			}
			if rr.Keys != nil && (rr.Keys.Verify() != nil || req.Keys.PreKey == nil) {
				t.Fatal("keys did not survive the round trip")
			}
		})
	}
	for _, bad := range []string{
		`<receipt from="491701234567@s.whatsapp.net" id="x" type="read"/>`,
		`<receipt from="491701234567@s.whatsapp.net" id="x" type="retry"><registration>AAAAAQ==</registration></receipt>`,
		`<receipt from="491701234567@s.whatsapp.net" id="x" type="retry"><retry count="0" id="x" v="1"/><registration>AAAAAQ==</registration></receipt>`,
		`<receipt from="491701234567@s.whatsapp.net" id="x" type="retry"><retry count="1" id="x" v="1"/></receipt>`,
		`<receipt from="491701234567@s.whatsapp.net" id="x" type="retry"><retry count="1" id="x" v="1"/><registration>AAE=</registration></receipt>`,
		`<receipt from="1-2@g.us" id="x" type="retry"><retry count="1" id="x" v="1"/><registration>AAAAAQ==</registration></receipt>`,
		`<receipt from="491701234567@s.whatsapp.net" id="x" type="retry"><retry count="2" id="x" v="1"/><registration>AAAAAQ==</registration><keys><type>BQ==</type></keys></receipt>`,
	} {
		if _, err := ParseRetryReceipt(mustUnmarshal(t, bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestPruneSentMessages(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	startNew(t, gw, bobJID)
	res := alice.send(t, bobJID, textMsg("keep me a day"))
	ctx := context.Background()
	st := alice.Signal().Store()
	if err := alice.PruneSentMessages(ctx, time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetSentMessage(ctx, bobJID, res.ID); err != nil {
		t.Fatalf("pruned within the retention and margin: %v", err)
	}
	if err := alice.PruneSentMessages(ctx, time.Now().Add(26*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetSentMessage(ctx, bobJID, res.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("kept past the retention: %v", err)
	}
}
