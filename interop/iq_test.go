package interop

import (
	"context"
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	re := regexp.MustCompile(`^[0-9A-F]{32}$`)
	for range 1000 {
		id := NewID()
		if !re.MatchString(id) {
			t.Fatalf("id %q is not 16 bytes of uppercase hex", id)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
}

func TestSendIQOutOfOrder(t *testing.T) {
	tc := startClient(t, fastConfig())
	gw := tc.connect(t)
	ctx := context.Background()

	const n = 8
	type result struct {
		tag  string
		answ stanza.Node
		err  error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tag := string(rune('a' + i))
			answ, err := tc.SendIQ(ctx, stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "test"},
				Content: []stanza.Node{{Tag: tag}}})
			results[i] = result{tag, answ, err}
		})
	}
	var reqs []stanza.Node
	for range n {
		req := gw.recv()
		if req.Attr("to") != "s.whatsapp.net" || len(req.Attr("id")) != 32 {
			t.Fatalf("iq not addressed or numbered: %v", req.Attrs)
		}
		reqs = append(reqs, req)
	}
	// Answer in reverse order, echoing the request's child so each caller can check
	// it got its own answer.
	for i := len(reqs) - 1; i >= 0; i-- {
		req := reqs[i]
		gw.send(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"id": req.Attr("id"), "type": "result", "from": "s.whatsapp.net"},
			Content: []stanza.Node{{Tag: req.Children()[0].Tag}}})
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("iq %s: %v", r.tag, r.err)
		}
		if got := r.answ.Children()[0].Tag; got != r.tag {
			t.Fatalf("iq %s got the answer for %s", r.tag, got)
		}
	}
}

func TestSendIQError(t *testing.T) {
	tests := []struct {
		name   string
		answer stanza.Node
		want   error
		reason string
		retry  time.Duration
	}{
		{"not found", iqError("404", "", ""), errcode.ErrNotFound, "", 0},
		{"forbidden restricted", iqError("403", "restricted", ""), errcode.ErrForbidden, "restricted", 0},
		{"rate limited", iqError("429", "", "7"), errcode.ErrRateLimited, "", 7 * time.Second},
		{"no error child", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "error"}}, errcode.ErrInternal, "", 0},
	}
	tc := startClient(t, fastConfig())
	gw := tc.connect(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := tc.SendIQ(context.Background(), stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "x"}})
				done <- err
			}()
			req := gw.recv()
			tt.answer.Attrs["id"] = req.Attr("id")
			gw.send(tt.answer)
			err := <-done
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var e *errcode.Error
			if !errors.As(err, &e) || e.Reason != tt.reason || e.RetryAfter != tt.retry {
				t.Fatalf("details of %v: want reason %q retry %s", err, tt.reason, tt.retry)
			}
		})
	}
}

func iqError(code, reason, retryAfter string) stanza.Node {
	e := stanza.Node{Tag: "error", Attrs: stanza.Attrs{"code": code, "text": "x"}}
	if reason != "" {
		e.Attrs["reason"] = reason
	}
	if retryAfter != "" {
		e.Attrs["retry_after"] = retryAfter
	}
	return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "error", "from": "s.whatsapp.net"}, Content: []stanza.Node{e}}
}

func TestSendIQTimeoutDropsConnection(t *testing.T) {
	cfg := fastConfig()
	cfg.IQTimeout = 80 * time.Millisecond
	tc := startClient(t, cfg)
	gw := tc.connect(t)
	start := time.Now()
	_, err := tc.SendIQ(context.Background(), stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "x"}})
	if !errors.Is(err, ErrIQTimeout) {
		t.Fatalf("got %v, want ErrIQTimeout", err)
	}
	if elapsed := time.Since(start); elapsed < 80*time.Millisecond || elapsed > time.Second {
		t.Fatalf("timed out after %s, want about 80ms", elapsed)
	}
	gw.waitClosed()
	disc := waitFor[*Disconnected](t, tc.events)
	if !errors.Is(disc.Err, ErrIQTimeout) || !disc.WillReconnect {
		t.Fatalf("Disconnected %+v, want ErrIQTimeout and a reconnect", disc)
	}
	tc.connect(t)
}

func TestPendingFailOnDisconnect(t *testing.T) {
	tc := startClient(t, fastConfig())
	gw := tc.connect(t)
	errs := make(chan error, 2)
	go func() {
		_, err := tc.SendIQ(context.Background(), stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "x"}})
		errs <- err
	}()
	go func() {
		_, err := tc.SendMessage(context.Background(), stanza.Node{Tag: "message", Attrs: stanza.Attrs{"to": "1@s.whatsapp.net", "type": "text"}})
		errs <- err
	}()
	gw.recv()
	gw.recv()
	_ = gw.conn.Close()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrDisconnected) {
				t.Fatalf("got %v, want ErrDisconnected", err)
			}
		case <-time.After(500 * time.Millisecond):
			t.Fatal("pending request did not fail on disconnect")
		}
	}
	waitFor[*Disconnected](t, tc.events)
	if _, err := tc.SendIQ(context.Background(), stanza.Node{Tag: "iq"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SendIQ while disconnected: %v, want ErrNotConnected", err)
	}
}

func TestSendIQContextCancel(t *testing.T) {
	tc := startClient(t, fastConfig())
	gw := tc.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := tc.SendIQ(ctx, stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "x"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the caller's deadline", err)
	}
	// The caller giving up says nothing about the connection.
	if gw.isClosed() || !tc.IsConnected() {
		t.Fatal("connection dropped because a caller gave up")
	}
}

func TestNotConnected(t *testing.T) {
	c := NewClient(Config{Dial: func(context.Context) (FrameConn, error) { return nil, errors.New("no") }})
	ctx := context.Background()
	if _, err := c.SendIQ(ctx, stanza.Node{Tag: "iq"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SendIQ: %v", err)
	}
	if _, err := c.SendMessage(ctx, stanza.Node{Tag: "message"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SendMessage: %v", err)
	}
	if err := c.SendNode(ctx, stanza.Node{Tag: "receipt"}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SendNode: %v", err)
	}
}
