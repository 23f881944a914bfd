package interop

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

func TestSendMessageAck(t *testing.T) {
	tests := []struct {
		name   string
		ack    stanza.Attrs // without id
		wantT  time.Time
		want   error
		retry  time.Duration
		reason string
	}{
		{name: "accepted", ack: stanza.Attrs{"class": "message", "t": "1700000005"}, wantT: time.Unix(1700000005, 0)},
		{name: "rate limited", ack: stanza.Attrs{"class": "message", "error": "429", "retry_after": "12"}, want: errcode.ErrRateLimited, retry: 12 * time.Second},
		{name: "stale devices", ack: stanza.Attrs{"class": "message", "error": "409"}, want: errcode.ErrStaleDevices},
		{name: "restricted", ack: stanza.Attrs{"class": "message", "error": "403", "reason": "restricted"}, want: errcode.ErrForbidden, reason: "restricted"},
		{name: "bad t", ack: stanza.Attrs{"class": "message", "t": "soon"}, want: errors.New("any")},
	}
	tc := startClient(t, fastConfig())
	gw := tc.connect(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type res struct {
				ack MessageAck
				err error
			}
			done := make(chan res, 1)
			go func() {
				ack, err := tc.SendMessage(context.Background(), stanza.Node{Tag: "message",
					Attrs: stanza.Attrs{"to": "491701234567@s.whatsapp.net", "type": "text"}})
				done <- res{ack, err}
			}()
			msg := gw.recv()
			id := msg.Attr("id")
			if msg.Tag != "message" || len(id) != 32 {
				t.Fatalf("sent %v", msg.Attrs)
			}
			// An ack of another class with the same id must not complete the send.
			gw.send(stanza.Node{Tag: "ack", Attrs: stanza.Attrs{"class": "receipt", "id": id}})
			attrs := stanza.Attrs{"id": id}
			for k, v := range tt.ack {
				attrs[k] = v
			}
			gw.send(stanza.Node{Tag: "ack", Attrs: attrs})
			r := <-done
			if r.ack.ID != id {
				t.Fatalf("ack id %q, want %q", r.ack.ID, id)
			}
			if tt.want == nil {
				if r.err != nil || !r.ack.T.Equal(tt.wantT) {
					t.Fatalf("got %+v, %v", r.ack, r.err)
				}
				return
			}
			var e *errcode.Error
			if errors.As(tt.want, &e) {
				if !errors.Is(r.err, tt.want) {
					t.Fatalf("got %v, want %v", r.err, tt.want)
				}
				errors.As(r.err, &e)
				if e.RetryAfter != tt.retry || e.Reason != tt.reason {
					t.Fatalf("details of %v", r.err)
				}
			} else if r.err == nil {
				t.Fatal("malformed ack accepted")
			}
		})
	}
}

func TestSendMessageAckTimeout(t *testing.T) {
	cfg := fastConfig()
	cfg.IQTimeout = 50 * time.Millisecond
	tc := startClient(t, cfg)
	gw := tc.connect(t)
	_, err := tc.SendMessage(context.Background(), stanza.Node{Tag: "message", Attrs: stanza.Attrs{"to": "1@s.whatsapp.net"}})
	if !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("got %v, want ErrAckTimeout", err)
	}
	gw.waitClosed()
}

// Stanzas reach the Handler in order, and nothing is acked until the upper layer says
// so; chatstates and the offline marker are never acked.
func TestEventsAndAcks(t *testing.T) {
	tc := startClient(t, fastConfig())
	gw := tc.connect(t)
	in := []stanza.Node{
		{Tag: "message", Attrs: stanza.Attrs{"id": "M1", "from": "491701234567@s.whatsapp.net", "t": "1", "type": "text"}},
		{Tag: "message", Attrs: stanza.Attrs{"id": "M2", "from": "1-2@g.us", "participant": "49170:3@s.whatsapp.net", "type": "text"}},
		{Tag: "receipt", Attrs: stanza.Attrs{"id": "M0", "from": "491701234567@s.whatsapp.net", "type": "read", "t": "2"}},
		{Tag: "notification", Attrs: stanza.Attrs{"id": "N1", "from": "s.whatsapp.net", "type": "encrypt"},
			Content: []stanza.Node{{Tag: "count", Attrs: stanza.Attrs{"value": "3"}}}},
		{Tag: "notification", Attrs: stanza.Attrs{"id": "N2", "from": "1-2@g.us", "type": "w:gp2", "participant": "491701234567@s.whatsapp.net"},
			Content: []stanza.Node{{Tag: "leave"}}},
		{Tag: "chatstate", Attrs: stanza.Attrs{"from": "491701234567@s.whatsapp.net"}, Content: []stanza.Node{{Tag: "composing"}}},
		{Tag: "ib", Content: []stanza.Node{{Tag: "offline", Attrs: stanza.Attrs{"count": "5"}}}},
		{Tag: "ib", Content: []stanza.Node{{Tag: "dirty"}}},
		{Tag: "presence", Attrs: stanza.Attrs{"from": "x"}},
	}
	for _, n := range in {
		gw.send(n)
	}
	var got []Event
	for range in {
		got = append(got, tc.events.next(t))
	}
	checks := []func(Event) bool{
		func(e Event) bool { m, ok := e.(*IncomingMessage); return ok && m.Node.Attr("id") == "M1" },
		func(e Event) bool { m, ok := e.(*IncomingMessage); return ok && m.Node.Attr("id") == "M2" },
		func(e Event) bool { r, ok := e.(*IncomingReceipt); return ok && r.Node.Attr("id") == "M0" },
		func(e Event) bool {
			n, ok := e.(*IncomingNotification)
			return ok && n.Err == nil && reflect.DeepEqual(n.Info, &PreKeysLow{Count: 3})
		},
		func(e Event) bool {
			n, ok := e.(*IncomingNotification)
			gc, isGroup := n.Info.(*GroupChange)
			return ok && n.Err == nil && isGroup && gc.Action == "leave"
		},
		func(e Event) bool { _, ok := e.(*IncomingChatState); return ok },
		func(e Event) bool { o, ok := e.(*OfflineDone); return ok && o.Count == 5 },
		func(e Event) bool { _, ok := e.(*IncomingIB); return ok },
		func(e Event) bool { u, ok := e.(*UnhandledStanza); return ok && u.Node.Tag == "presence" },
	}
	for i, check := range checks {
		if !check(got[i]) {
			t.Fatalf("event %d is %#v", i, got[i])
		}
	}
	if n, ok := gw.tryRecv(100 * time.Millisecond); ok {
		t.Fatalf("client sent %v %v before the upper layer acked anything", n, n.Attrs)
	}

	ctx := context.Background()
	wantAcks := []stanza.Attrs{
		{"class": "message", "id": "M1", "to": "491701234567@s.whatsapp.net"},
		{"class": "message", "id": "M2", "to": "1-2@g.us", "participant": "49170:3@s.whatsapp.net"},
		{"class": "receipt", "id": "M0", "to": "491701234567@s.whatsapp.net", "type": "read"},
		{"class": "notification", "id": "N1", "to": "s.whatsapp.net", "type": "encrypt"},
	}
	for i, want := range wantAcks {
		if err := tc.Ack(ctx, in[i]); err != nil {
			t.Fatalf("Ack %d: %v", i, err)
		}
		ack := gw.recv()
		if ack.Tag != "ack" || !reflect.DeepEqual(ack.Attrs, want) || ack.Content != nil {
			t.Fatalf("ack %d = <%s %v>, want %v", i, ack.Tag, ack.Attrs, want)
		}
	}
	if err := tc.AckWith(ctx, in[0], "error"); err != nil {
		t.Fatal(err)
	}
	if ack := gw.recv(); ack.Attr("type") != "error" {
		t.Fatalf("AckWith type: %v", ack.Attrs)
	}
	if err := tc.Ack(ctx, in[5]); err == nil {
		t.Fatal("acking a chatstate was allowed")
	}
}

func TestBuildAckRefusesIncomplete(t *testing.T) {
	for _, n := range []stanza.Node{
		{Tag: "message", Attrs: stanza.Attrs{"from": "1@s.whatsapp.net"}},
		{Tag: "receipt", Attrs: stanza.Attrs{"id": "X"}},
		{Tag: "ib"},
	} {
		if _, err := BuildAck(n); err == nil {
			t.Fatalf("BuildAck(%v %v) succeeded", n, n.Attrs)
		}
	}
}

// A Handler that waits for an iq answer must not block the reader that delivers it.
func TestHandlerMaySendIQ(t *testing.T) {
	d := newFakeDialer(t)
	var c *Client
	answered := make(chan error, 1)
	cfg := fastConfig()
	cfg.Dial = d.dial
	cfg.Handler = func(ctx context.Context, evt Event) {
		if _, ok := evt.(*IncomingNotification); ok {
			_, err := c.SendIQ(ctx, stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "encrypt"}, Content: []stanza.Node{{Tag: "count"}}})
			answered <- err
		}
	}
	c = NewClient(cfg)
	ctx, cancel := contextWithCleanup(t)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	gw := d.next()
	gw.success()
	gw.send(stanza.Node{Tag: "notification", Attrs: stanza.Attrs{"id": "1", "from": "s.whatsapp.net", "type": "encrypt"},
		Content: []stanza.Node{{Tag: "count", Attrs: stanza.Attrs{"value": "1"}}}})
	req := gw.recv()
	gw.send(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"id": req.Attr("id"), "type": "result"},
		Content: []stanza.Node{{Tag: "count", Attrs: stanza.Attrs{"value": "1"}}}})
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("iq from the Handler never completed")
	}
}

// A second message with the id of one still waiting for its ack (a retry answer that
// overtook the original's ack) is refused with ErrAnswerPending, before anything is
// written, and goes through once the first is acked.
func TestSendMessageSameIDWhilePending(t *testing.T) {
	tc := startClient(t, fastConfig())
	gw := tc.connect(t)
	msg := stanza.Node{Tag: "message", Attrs: stanza.Attrs{"id": "SAMEID", "to": "491701234567@s.whatsapp.net", "type": "text"}}
	first := make(chan error, 1)
	go func() {
		_, err := tc.SendMessage(context.Background(), msg)
		first <- err
	}()
	if got := gw.recv(); got.Attr("id") != "SAMEID" {
		t.Fatalf("sent %v", got.Attrs)
	}
	if _, err := tc.SendMessage(context.Background(), msg); !errors.Is(err, ErrAnswerPending) {
		t.Fatalf("second send while the first waits: %v, want ErrAnswerPending", err)
	}
	gw.send(stanza.Node{Tag: "ack", Attrs: stanza.Attrs{"class": "message", "id": "SAMEID"}})
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		_, err := tc.SendMessage(context.Background(), msg)
		second <- err
	}()
	if got := gw.recv(); got.Attr("id") != "SAMEID" {
		t.Fatalf("sent %v", got.Attrs)
	}
	gw.send(stanza.Node{Tag: "ack", Attrs: stanza.Attrs{"class": "message", "id": "SAMEID"}})
	if err := <-second; err != nil {
		t.Fatal(err)
	}
}
