package interop

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// TestAccountOnSQLStores runs the account flows on SQLite and PostgreSQL, with the
// bridge's own write joining the decryption's transaction: a failed delivery rolls
// back both the ratchet step and the bridge's row, and the redelivery commits both.
func TestAccountOnSQLStores(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := sqlstore.New(db, zerolog.Nop())
		if err := c.Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `CREATE TABLE bridge_message (id TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		gw := newTestGateway(t)
		start := func(j jid.JID) *testAccount {
			acc, err := c.CreateAccount(ctx, j)
			if err != nil {
				t.Fatal(err)
			}
			ta := startAccountOn(t, gw, c.StoreFor(acc))
			waitEvent[*PreKeysUploaded](t, ta)
			return ta
		}
		alice, bob := start(aliceJID), start(bobJID)
		record := func(ctx context.Context, m *DecryptedMessage) error {
			if m.Message == nil {
				return nil
			}
			_, err := db.Exec(ctx, `INSERT INTO bridge_message (id) VALUES ($1)`, m.Info.ID)
			return err
		}
		bob.hook.Store(&record)
		rows := func(id string) (n int) {
			if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM bridge_message WHERE id=$1`, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}

		bob.failDeliver.Store(1)
		res := alice.send(t, bobJID, textMsg("first"))
		if d := bob.nextDelivery(t); !d.failed {
			t.Fatal("deliver did not fail")
		}
		if h := bob.nextHandled(t); h.err == nil {
			t.Fatal("failure not reported")
		}
		if n := rows(res.ID); n != 0 {
			t.Fatalf("the bridge's row survived the failed delivery (%d)", n)
		}
		gw.drop(bobJID)
		bob.receiveText(t, aliceJID, "first")
		if n := rows(res.ID); n != 1 {
			t.Fatalf("%d rows after the redelivery, want 1", n)
		}

		bob.send(t, aliceJID, textMsg("reply"))
		alice.receiveText(t, bobJID, "reply")
		gw.corruptNext(bobJID, "msg", 1)
		res = alice.send(t, bobJID, textMsg("retried"))
		if d := bob.nextDelivery(t); d.m.Undecryptable == nil {
			t.Fatalf("corrupted message delivered: %+v", d.m)
		}
		bob.nextHandled(t)
		bob.receiveText(t, aliceJID, "retried")
		if n := rows(res.ID); n != 1 {
			t.Fatalf("%d rows for the retried message", n)
		}

		members := []jid.JID{aliceJID, bobJID}
		gw.mu.Lock()
		gw.groups[groupJID] = members
		gw.mu.Unlock()
		alice.sendGroup(t, members, "group one")
		bob.receiveGroupText(t, aliceJID, "group one")
		alice.sendGroup(t, members, "group two")
		bob.receiveGroupText(t, aliceJID, "group two")
	})
}
