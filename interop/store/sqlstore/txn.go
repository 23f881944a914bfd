package sqlstore

import (
	"context"
	"fmt"
	"sync"

	"go.mau.fi/util/dbutil"
)

// txnKey marks a ctx that runs inside a transaction started by this container's DoTxn.
type txnKey struct{ c *Container }

// txn is the cache side of one outermost DoTxn: which cache names it claimed, so they
// can be kept (commit) or evicted (rollback) when it ends.
type txn struct {
	// foreign is set when the SQL transaction was begun by someone else (a dbutil DoTxn
	// on the same database that did not go through us): we cannot see whether it
	// commits, so the caches are bypassed within it and its names evicted at the end.
	foreign bool

	mu     sync.Mutex // fn may hand its ctx to other goroutines
	claims map[claimKey]struct{}
}

type claimKey struct {
	cache releaser
	name  string
	all   bool
}

// releaser is the part of txnCache a txn calls when it ends.
type releaser interface {
	release(t *txn, name string, all, committed bool)
}

// addClaim records a claim and reports whether it is new for this txn.
func (t *txn) addClaim(k claimKey) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.claims[k]; ok {
		return false
	}
	if t.claims == nil {
		t.claims = make(map[claimKey]struct{})
	}
	t.claims[k] = struct{}{}
	return true
}

func (t *txn) finish(committed bool) {
	t.mu.Lock()
	claims := t.claims
	t.claims = nil
	t.mu.Unlock()
	for k := range claims {
		k.cache.release(t, k.name, k.all, committed)
	}
}

// txnFrom returns the txn of ctx, or nil outside any DoTxn of this container.
func (c *Container) txnFrom(ctx context.Context) *txn {
	t, _ := ctx.Value(txnKey{c}).(*txn)
	return t
}

// DoTxn runs fn in one SQL transaction shared by every store of this container: writes
// made with the ctx given to fn commit together, and the record caches keep what the
// transaction wrote only if it commits. A nested call joins the outer transaction
// without a savepoint: if the outer one ignores the inner's error and commits, the
// inner's writes commit too. fn must write with the ctx it is given; a write with
// another ctx would wait (on SQLite) for the lock this transaction holds.
//
// Bridge tables written with the same ctx join the transaction too, because dbutil
// children of one database share the transaction. The reverse (calling the store
// inside a transaction begun by the bridge's own dbutil DoTxn) works but bypasses the
// caches inside it, and evicts what it touched when fn returns, since its outcome is
// invisible here; a reader of the same remote user racing that transaction's commit
// could then cache pre-transaction state, so prefer starting with this DoTxn.
func (c *Container) DoTxn(ctx context.Context, fn func(ctx context.Context) error) error {
	if c.txnFrom(ctx) != nil {
		return fn(ctx)
	}
	t := &txn{}
	ctx = context.WithValue(ctx, txnKey{c}, t)
	committed := false
	// Deferred so that a panic in fn still releases the claims (as a rollback).
	defer func() { t.finish(committed) }()
	if _, inTxn := c.db.Execable(ctx).(dbutil.Transaction); inTxn {
		t.foreign = true
		return fn(ctx)
	}
	var panicked any
	err := c.db.DoTxn(ctx, nil, func(ctx context.Context) (err error) {
		// dbutil does not roll back when fn panics, which would leave the connection
		// (and on SQLite the write lock) held forever. Roll back, then re-panic.
		defer func() {
			if panicked = recover(); panicked != nil {
				err = fmt.Errorf("panic in transaction: %v", panicked)
			}
		}()
		return fn(ctx)
	})
	if panicked != nil {
		panic(panicked)
	}
	committed = err == nil
	return err
}
