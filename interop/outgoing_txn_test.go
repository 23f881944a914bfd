package interop

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
)

// txnCounter counts the outermost store transactions begun with a ctx marked by
// countedKey.
type txnCounter struct {
	store.Store
	n atomic.Int32
}

type (
	countedKey struct{}
	inTxnKey   struct{}
)

func (c *txnCounter) DoTxn(ctx context.Context, fn func(ctx context.Context) error) error {
	if ctx.Value(countedKey{}) != nil && ctx.Value(inTxnKey{}) == nil {
		c.n.Add(1)
	}
	return c.Store.DoTxn(context.WithValue(ctx, inTxnKey{}, true), fn)
}

// TestFirstGroupSendTransactions checks that a first group message starts the
// sessions with all member devices in one store transaction, not one each: on
// PostgreSQL every commit costs milliseconds, times the group's devices.
func TestFirstGroupSendTransactions(t *testing.T) {
	gw := newTestGateway(t)
	acc, err := memstore.NewAccount(aliceJID)
	if err != nil {
		t.Fatal(err)
	}
	counter := &txnCounter{Store: memstore.New(acc)}
	alice := startAccountOn(t, gw, counter)
	waitEvent[*PreKeysUploaded](t, alice)
	receivers := []*testAccount{startNew(t, gw, bobJID), startNew(t, gw, bob1JID), startNew(t, gw, carolJID), startNew(t, gw, daveJID)}
	members := []jid.JID{aliceJID, bobJID, carolJID, daveJID}
	gw.mu.Lock()
	gw.groups[groupJID] = slices.Clone(members)
	gw.mu.Unlock()

	ctx := context.WithValue(context.Background(), countedKey{}, true)
	res, err := alice.SendGroupMessage(ctx, groupJID, members, "", textMsg("first"), SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Distributions != 4 {
		t.Fatalf("%d distributions, want 4 (new sessions with every device)", res.Distributions)
	}
	// One for the sessions, one for the encryption and the kept copy.
	if n := counter.n.Load(); n > 2 {
		t.Fatalf("the first send to 4 devices ran %d store transactions, want at most 2", n)
	}
	for _, r := range receivers {
		r.receiveGroupText(t, aliceJID, "first")
	}
}
