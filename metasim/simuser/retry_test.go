package simuser

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// flakyStores keeps the Signal state in memory, and fails the next transactions of
// one device while armed, as a busy database would.
type flakyStores struct {
	Stores
	device jid.JID
	fails  atomic.Int32 // transactions still to fail
	failed atomic.Int32 // transactions failed so far
}

var errFlaky = errors.New("database is locked (simulated)")

func (f *flakyStores) Open(ctx context.Context, device jid.JID) (store.Store, bool, error) {
	st, created, err := f.Stores.Open(ctx, device)
	if err != nil || device != f.device {
		return st, created, err
	}
	return &flakyStore{Store: st, f: f}, created, nil
}

type flakyStore struct {
	store.Store
	f *flakyStores
}

func (s *flakyStore) DoTxn(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.f.fails.Add(-1) >= 0 {
		s.f.failed.Add(1)
		return errFlaky
	}
	return s.Store.DoTxn(ctx, fn)
}

// TestFailedMessageIsRetried fails a device's first attempts to handle a message (its
// store's transaction fails, as when the database is busy): the device tries again
// by itself, without a reconnect, and the message arrives once, and so does the next.
func TestFailedMessageIsRetried(t *testing.T) {
	e := newEnvOn(t, sqltest.SQLite(t), true)
	alice := jid.New("491701111111", jid.ServerGateway)
	flaky := &flakyStores{Stores: MemoryStores(), device: alice}
	// The env's Manager, but with the flaky stores.
	_ = e.mgr.Close()
	var err error
	e.mgr, err = New(context.Background(), Config{Gateway: e.gw, DB: e.db, Stores: flaky, Log: zerolog.Nop()})
	must(t, err)
	e.user(alice.User, 1)
	tp := e.thirdParty("491709999999")

	flaky.fails.Store(3)
	id := tp.send(t, alice, &waE2E.Message{Conversation: proto.String("despite the failures")})
	if it := e.waitMsg(alice, id); it.Kind != KindText || it.Data.Text != "despite the failures" {
		t.Fatalf("alice got %+v", it)
	}
	if n := flaky.failed.Load(); n != 3 {
		t.Fatalf("%d transactions failed, want 3", n)
	}
	id2 := tp.send(t, alice, &waE2E.Message{Conversation: proto.String("and the next")})
	e.waitMsg(alice, id2)
	items, err := e.mgr.Inbox(ctxLong(t), alice, Filter{Kinds: []Kind{KindText}})
	must(t, err)
	if len(items) != 2 || items[0].ID != id || items[1].ID != id2 {
		t.Fatalf("inbox = %+v, want the two messages once each", items)
	}
	// The ack follows the inbox's commit.
	deadline := time.Now().Add(waitLong)
	for {
		n, err := e.gw.QueueDepth(ctxLong(t), alice)
		must(t, err)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d stanzas left at the gateway for alice, want none: the device acks", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := e.mgr.Devices(alice); len(st) != 1 || !st[0].Connected {
		t.Fatalf("device status %+v, want connected", st)
	}
}
