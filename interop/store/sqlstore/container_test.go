package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/libsignal/groups"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

func TestUpgradeFromEmpty(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		// The bridge's database has its own version table; ours must not touch it.
		db.VersionTable = "bridge_version"
		db.UpgradeTable = dbutil.BuildUpgradeTable().WithRaw(0, 1, 0, "bridge tables", dbutil.TxnModeOn,
			func(ctx context.Context, db *dbutil.Database) error {
				_, err := db.Exec(ctx, "CREATE TABLE bridge_portal (id TEXT PRIMARY KEY)")
				return err
			}).Finish()
		if err := db.Upgrade(ctx); err != nil {
			t.Fatalf("parent Upgrade: %v", err)
		}
		c := New(db, zerolog.Nop())
		for i := range 2 { // the second run must find the schema current and do nothing
			if err := c.Upgrade(ctx); err != nil {
				t.Fatalf("Upgrade #%d: %v", i+1, err)
			}
		}
		for _, table := range append(allTables, VersionTable) {
			if ok, err := db.TableExists(ctx, table); err != nil || !ok {
				t.Errorf("table %s exists = %v, %v", table, ok, err)
			}
		}
		var version int
		if err := db.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&version); err != nil || version != 1 {
			t.Errorf("schema version = %d, %v; want 1", version, err)
		}
		var bridgeVersion int
		if err := db.QueryRow(ctx, "SELECT version FROM bridge_version").Scan(&bridgeVersion); err != nil || bridgeVersion != 1 {
			t.Errorf("bridge version = %d, %v; want untouched 1", bridgeVersion, err)
		}
	})
}

func TestAccounts(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		if _, err := c.GetAccount(ctx, aliceJID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetAccount before create: %v, want ErrNotFound", err)
		}
		created, err := c.CreateAccount(ctx, aliceJID)
		if err != nil {
			t.Fatal(err)
		}
		if created.IdentityKey == nil || created.CreatedAt.IsZero() {
			t.Fatalf("CreateAccount returned incomplete account %+v", created)
		}
		if _, err = c.CreateAccount(ctx, aliceJID); !errors.Is(err, ErrAccountExists) {
			t.Fatalf("second CreateAccount: %v, want ErrAccountExists", err)
		}
		got, err := c.GetAccount(ctx, aliceJID)
		if err != nil {
			t.Fatal(err)
		}
		if got.JID != aliceJID || got.RegistrationID != created.RegistrationID || !got.CreatedAt.Equal(created.CreatedAt) ||
			got.IdentityKey.PublicKey().PublicKey().PublicKey() != created.IdentityKey.PublicKey().PublicKey().PublicKey() ||
			got.IdentityKey.PrivateKey().Serialize() != created.IdentityKey.PrivateKey().Serialize() {
			t.Fatalf("GetAccount = %+v, want %+v", got, created)
		}
		if _, err = c.CreateAccount(ctx, bobJID); err != nil {
			t.Fatal(err)
		}
		list, err := c.ListAccounts(ctx)
		if err != nil || len(list) != 2 || list[0].JID != aliceJID || list[1].JID != bobJID {
			t.Fatalf("ListAccounts = %v, %v; want alice then bob (sorted by JID)", list, err)
		}
		if s := c.StoreFor(got); s.Account() != got || s.GetLocalRegistrationID() != created.RegistrationID ||
			s.GetIdentityKeyPair().PrivateKey().Serialize() != created.IdentityKey.PrivateKey().Serialize() {
			t.Error("the store does not carry its account's identity")
		}
		if c.StoreFor(got) != c.StoreFor(created) {
			t.Error("StoreFor the same account returned two stores (their caches would diverge)")
		}
		if err = c.DeleteAccount(ctx, aliceJID); err != nil {
			t.Fatal(err)
		}
		if err = c.DeleteAccount(ctx, aliceJID); err != nil {
			t.Fatalf("deleting a missing account: %v", err)
		}
		if _, err = c.GetAccount(ctx, aliceJID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetAccount after delete: %v", err)
		}
		recreated, err := c.CreateAccount(ctx, aliceJID)
		if err != nil {
			t.Fatal(err)
		}
		if c.StoreFor(recreated) == c.StoreFor(created) {
			t.Error("a recreated account shares the store (and identity) of the deleted one")
		}
	})
}

// fill puts one row in every table of s's account.
func fill(t *testing.T, a, b store.Store) {
	t.Helper()
	ctx := context.Background()
	converse(t, a, b) // identities, sessions, prekeys, signed prekeys
	group := jid.MustParse("120363000000000001@g.us")
	ser := serialize.NewProtoBufSerializer()
	name := protocol.NewSenderKeyName(group.String(), a.Account().JID.SignalAddress())
	if _, err := groups.NewGroupSessionBuilder(a, ser).Create(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := a.AddSenderKeyHolders(ctx, group, []jid.JID{b.Account().JID}); err != nil {
		t.Fatal(err)
	}
	msg := &store.SentMessage{Chat: b.Account().JID.ToUser(), ID: "3EB0AA", Plaintext: []byte{1}, SentAt: time.Now()}
	if err := a.PutSentMessage(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GeneratePreKeys(ctx, 2); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteAccountCascades(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		fill(t, alice, bob)
		fill(t, bob, alice)
		for _, table := range allTables {
			if countRows(t, c, table, aliceJID) == 0 {
				t.Fatalf("setup left %s empty", table)
			}
		}
		if err := c.DeleteAccount(ctx, aliceJID); err != nil {
			t.Fatal(err)
		}
		for _, table := range allTables {
			if n := countRows(t, c, table, aliceJID); n != 0 {
				t.Errorf("%s still has %d rows of the deleted account", table, n)
			}
			if countRows(t, c, table, bobJID) == 0 {
				t.Errorf("%s lost the other account's rows", table)
			}
		}
		// The old store's caches must not outlive the rows.
		if ok, err := alice.ContainsSession(ctx, bobJID.SignalAddress()); err != nil || ok {
			t.Errorf("ContainsSession after delete = %v, %v", ok, err)
		}
		if key, err := alice.GetIdentity(ctx, bobJID.SignalName(), uint32(bobJID.Device)); err != nil || key != nil {
			t.Errorf("GetIdentity after delete = %v, %v", key, err)
		}
	})
}

func TestAccountsAreIsolated(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob, carol := newStore(t, c, aliceJID), newStore(t, c, bobJID), newStore(t, c, carolJID)
		// Alice and Bob both talk to Carol: same remote address, same prekey ids.
		converse(t, alice, carol)
		converse(t, bob, carol)
		carolAddr := carolJID.SignalAddress()
		for _, s := range []store.Store{reopen(t, c, alice), reopen(t, c, bob)} {
			key, err := s.GetIdentity(ctx, carolJID.SignalName(), 0)
			if err != nil || key == nil || !bytes.Equal(key.Serialize(), carol.GetIdentityKeyPair().PublicKey().Serialize()) {
				t.Errorf("%s: identity of carol = %v, %v", s.Account().JID, key, err)
			}
		}
		aliceSess := sessionBytes(t, ctx, reopen(t, c, alice), carolAddr)
		bobSess := sessionBytes(t, ctx, reopen(t, c, bob), carolAddr)
		if aliceSess == nil || bobSess == nil || bytes.Equal(aliceSess, bobSess) {
			t.Fatal("alice and bob must each have their own session with carol")
		}
		if err := alice.DeleteAllSessions(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, _ := bob.ContainsSession(ctx, carolAddr); !ok {
			t.Error("DeleteAllSessions of alice removed bob's session")
		}
		if ok, _ := reopen(t, c, bob).ContainsSession(ctx, carolAddr); !ok {
			t.Error("DeleteAllSessions of alice removed bob's session row")
		}
		// Prekey ids are per account: both start at 1 and each sees only its own.
		alicePKs, err := alice.GeneratePreKeys(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		dave := newStore(t, c, jid.MustParse("15550004@s.whatsapp.net"))
		davePKs, err := dave.GeneratePreKeys(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if alicePKs[0].ID().Value != 1 || davePKs[0].ID().Value != 1 {
			t.Fatalf("first prekey ids: alice %d, dave %d; want 1 and 1", alicePKs[0].ID().Value, davePKs[0].ID().Value)
		}
		for _, tc := range []struct {
			s    store.Store
			want []byte
		}{{alice, alicePKs[0].Serialize()}, {dave, davePKs[0].Serialize()}} {
			pk, err := tc.s.LoadPreKey(ctx, 1)
			if err != nil || pk == nil || !bytes.Equal(pk.Serialize(), tc.want) {
				t.Errorf("%s: prekey 1 is not its own", tc.s.Account().JID)
			}
		}
	})
}
