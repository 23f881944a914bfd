package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"testing"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

var errAbort = errors.New("abort")

// state is what a transaction test compares: Alice's session and recorded identity
// for Bob, and where her next prekey batch starts.
type state struct {
	session  []byte
	identity []byte
}

func stateOf(t *testing.T, ctx context.Context, s store.Store) state {
	t.Helper()
	var st state
	st.session = sessionBytes(t, ctx, s, bobJID.SignalAddress())
	if key, err := s.GetIdentity(ctx, bobJID.SignalName(), uint32(bobJID.Device)); err != nil {
		t.Fatal(err)
	} else if key != nil {
		st.identity = key.Serialize()
	}
	return st
}

// sqlStateOf reads the rows behind state directly, without touching any cache (and
// within the transaction of ctx, if any).
func sqlStateOf(t *testing.T, ctx context.Context, c *Container) state {
	t.Helper()
	var st state
	for _, q := range []struct {
		query string
		dest  *[]byte
	}{
		{`SELECT session FROM interop_session WHERE account_jid=$1 AND their_name=$2 AND device_id=$3`, &st.session},
		{`SELECT identity FROM interop_identity WHERE account_jid=$1 AND their_name=$2 AND device_id=$3`, &st.identity},
	} {
		err := c.db.QueryRow(ctx, q.query, aliceJID.String(), bobJID.SignalName(), bobJID.Device).Scan(q.dest)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
	}
	if st.identity != nil {
		st.identity = append([]byte{ecc.DjbType}, st.identity...)
	}
	return st
}

func (a state) equal(b state) bool {
	return bytes.Equal(a.session, b.session) && bytes.Equal(a.identity, b.identity)
}

// TestTxn runs changes in a transaction and checks that both the cached store and SQL
// (a reopened store) show the state from before if it rolled back, or the state
// reached inside it if it committed.
func TestTxn(t *testing.T) {
	type env struct {
		c      *Container
		pa, pb *peer
		// incoming is a message from Bob that Alice has not decrypted yet.
		incoming []byte
	}
	cases := []struct {
		name      string
		run       func(ctx context.Context, e *env) error // called inside the transaction
		committed bool
	}{
		{name: "encrypt then fail", run: func(ctx context.Context, e *env) error {
			e.pa.encrypt(t, ctx, []byte("x"))
			return errAbort
		}},
		{name: "decrypt then fail", run: func(ctx context.Context, e *env) error {
			if _, err := e.pa.decrypt(ctx, e.incoming, false); err != nil {
				return err
			}
			return errAbort
		}},
		{name: "decrypt and commit", committed: true, run: func(ctx context.Context, e *env) error {
			_, err := e.pa.decrypt(ctx, e.incoming, false)
			return err
		}},
		{name: "identity change then fail", run: func(ctx context.Context, e *env) error {
			if err := e.pa.s.DeleteSessionsOf(ctx, bobJID.SignalName()); err != nil {
				return err
			}
			if err := e.pa.s.DeleteIdentitiesOf(ctx, bobJID.SignalName()); err != nil {
				return err
			}
			if err := e.pa.s.SaveIdentity(ctx, bobJID.SignalAddress(), newIdentity(t)); err != nil {
				return err
			}
			return errAbort
		}},
		{name: "identity change and commit", committed: true, run: func(ctx context.Context, e *env) error {
			if err := e.pa.s.DeleteSessionsOf(ctx, bobJID.SignalName()); err != nil {
				return err
			}
			return e.pa.s.SaveIdentity(ctx, bobJID.SignalAddress(), newIdentity(t))
		}},
		{name: "delete all sessions then fail", run: func(ctx context.Context, e *env) error {
			if err := e.pa.s.DeleteAllSessions(ctx); err != nil {
				return err
			}
			return errAbort
		}},
		{name: "nested commit inside failed outer", run: func(ctx context.Context, e *env) error {
			if err := e.pa.s.DoTxn(ctx, func(ctx context.Context) error {
				e.pa.encrypt(t, ctx, []byte("x"))
				return nil
			}); err != nil {
				return err
			}
			return errAbort
		}},
		{
			// Nested calls join without savepoints: an inner failure the outer
			// ignores still commits the inner's writes.
			name: "failed nested inside committed outer", committed: true,
			run: func(ctx context.Context, e *env) error {
				err := e.pa.s.DoTxn(ctx, func(ctx context.Context) error {
					e.pa.encrypt(t, ctx, []byte("x"))
					return errAbort
				})
				if !errors.Is(err, errAbort) {
					return errors.New("nested DoTxn lost its error")
				}
				return nil
			},
		},
		{name: "panic", run: func(ctx context.Context, e *env) error {
			e.pa.encrypt(t, ctx, []byte("x"))
			panic(errAbort)
		}},
	}
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		pa, pb := converse(t, alice, bob)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				// Reset Alice to a known state, then one pending message from Bob.
				if err := alice.DeleteSessionsOf(ctx, bobJID.SignalName()); err != nil {
					t.Fatal(err)
				}
				if err := alice.DeleteIdentitiesOf(ctx, bobJID.SignalName()); err != nil {
					t.Fatal(err)
				}
				pa, pb = converse(t, alice, bob)
				e := &env{c: c, pa: pa, pb: pb, incoming: pb.encrypt(t, ctx, []byte("pending"))}
				before := stateOf(t, ctx, alice)

				var inside state
				var err error
				func() {
					defer func() {
						if r := recover(); r != nil {
							if r != errAbort {
								panic(r)
							}
							err = errAbort
						}
					}()
					err = alice.DoTxn(ctx, func(ctx context.Context) error {
						runErr := tc.run(ctx, e)
						inside = sqlStateOf(t, ctx, c)
						return runErr
					})
				}()
				if tc.committed != (err == nil) {
					t.Fatalf("DoTxn = %v, want committed=%v", err, tc.committed)
				}
				want := before
				if tc.committed {
					want = inside
					if want.equal(before) {
						t.Fatal("the committed transaction changed nothing; the case tests nothing")
					}
				}
				if got := stateOf(t, ctx, alice); !got.equal(want) {
					t.Error("cached state after the transaction is wrong")
				}
				if got := sqlStateOf(t, ctx, c); !got.equal(want) {
					t.Error("SQL state after the transaction is wrong")
				}
				// After a rollback the pending message still decrypts: the ratchet
				// went back too.
				if !tc.committed && want.session != nil {
					if got, err := pa.decrypt(ctx, e.incoming, false); err != nil || string(got) != "pending" {
						t.Errorf("pending message after rollback: %q, %v", got, err)
					}
				}
			})
		}
	})
}

// TestForeignTxn: the store inside a transaction the bridge began with dbutil directly
// cannot see its outcome; it must still never serve rolled-back records.
func TestForeignTxn(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		pa, _ := converse(t, alice, bob)
		for _, commit := range []bool{false, true} {
			before := stateOf(t, ctx, alice)
			var inside state
			err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
				return alice.DoTxn(ctx, func(ctx context.Context) error {
					pa.encrypt(t, ctx, []byte("x"))
					inside = sqlStateOf(t, ctx, c)
					if !commit {
						return errAbort
					}
					return nil
				})
			})
			if (err == nil) != commit {
				t.Fatalf("commit=%v: DoTxn = %v", commit, err)
			}
			want := before
			if commit {
				want = inside
			}
			if got := stateOf(t, ctx, alice); !got.equal(want) {
				t.Errorf("commit=%v: cached state is wrong", commit)
			}
			if got := sqlStateOf(t, ctx, c); !got.equal(want) {
				t.Errorf("commit=%v: SQL state is wrong", commit)
			}
		}
	})
}

// TestUncommittedIsInvisible: while a transaction has stored a session and an
// identity but not committed, other contexts must read the committed ones, not what
// the transaction put in the cache.
func TestUncommittedIsInvisible(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		pa, _ := converse(t, alice, bob)
		before := stateOf(t, ctx, alice)
		var inside state
		err := alice.DoTxn(ctx, func(txnCtx context.Context) error {
			pa.encrypt(t, txnCtx, []byte("x"))
			if err := alice.SaveIdentity(txnCtx, bobJID.SignalAddress(), newIdentity(t)); err != nil {
				return err
			}
			inside = sqlStateOf(t, txnCtx, c)
			outside := make(chan state)
			go func() {
				var st state
				if rec, err := alice.LoadSession(ctx, bobJID.SignalAddress()); err == nil {
					st.session = rec.Serialize()
				}
				if key, err := alice.GetIdentity(ctx, bobJID.SignalName(), uint32(bobJID.Device)); err == nil && key != nil {
					st.identity = key.Serialize()
				}
				outside <- st
			}()
			if got := <-outside; !got.equal(before) {
				t.Errorf("another context saw uncommitted state (session %v, identity %v)",
					!bytes.Equal(got.session, before.session), !bytes.Equal(got.identity, before.identity))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if inside.equal(before) {
			t.Fatal("the transaction changed nothing")
		}
		if got := stateOf(t, ctx, alice); !got.equal(inside) {
			t.Error("after commit the store does not return the committed state")
		}
	})
}
