package sqlstore

import (
	"bytes"
	"context"
	"testing"

	"github.com/rs/zerolog"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/util/keyhelper"
	"go.mau.fi/libsignal/util/optional"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

var (
	aliceJID = jid.MustParse("1-15550001:1@interop")
	bobJID   = jid.MustParse("15550002:3@s.whatsapp.net")
	carolJID = jid.MustParse("15550003@s.whatsapp.net")
)

// newContainer upgrades db and returns a container on it.
func newContainer(tb testing.TB, db *dbutil.Database) *Container {
	tb.Helper()
	c := New(db, zerolog.Nop())
	if err := c.Upgrade(context.Background()); err != nil {
		tb.Fatalf("Upgrade: %v", err)
	}
	return c
}

// newStore creates an account and returns its store.
func newStore(tb testing.TB, c *Container, j jid.JID) store.Store {
	tb.Helper()
	acc, err := c.CreateAccount(context.Background(), j)
	if err != nil {
		tb.Fatalf("CreateAccount(%s): %v", j, err)
	}
	return c.StoreFor(acc)
}

// reopen returns the store of the same account from a new container on the same
// database, whose caches are empty: whatever it reads comes from SQL.
func reopen(tb testing.TB, c *Container, s store.Store) store.Store {
	tb.Helper()
	c2 := New(c.db, zerolog.Nop())
	acc, err := c2.GetAccount(context.Background(), s.Account().JID)
	if err != nil {
		tb.Fatalf("GetAccount: %v", err)
	}
	return c2.StoreFor(acc)
}

// bundleFor publishes a prekey bundle of s the way the gateway would hand it out.
func bundleFor(tb testing.TB, s store.Store) *prekey.Bundle {
	tb.Helper()
	ctx := context.Background()
	ser := serialize.NewProtoBufSerializer()
	pks, err := s.GeneratePreKeys(ctx, 1)
	if err != nil {
		tb.Fatalf("GeneratePreKeys: %v", err)
	}
	spk, err := keyhelper.GenerateSignedPreKey(s.GetIdentityKeyPair(), 1, ser.SignedPreKeyRecord)
	if err != nil {
		tb.Fatalf("GenerateSignedPreKey: %v", err)
	}
	if err = s.StoreSignedPreKey(ctx, spk.ID(), spk); err != nil {
		tb.Fatalf("StoreSignedPreKey: %v", err)
	}
	return prekey.NewBundle(s.GetLocalRegistrationID(), uint32(s.Account().JID.Device),
		optional.NewOptionalUint32(pks[0].ID().Value), spk.ID(),
		pks[0].KeyPair().PublicKey(), spk.KeyPair().PublicKey(), spk.Signature(),
		s.GetIdentityKeyPair().PublicKey())
}

// peer is one side of a libsignal conversation.
type peer struct {
	s    store.Store
	ser  *serialize.Serializer
	them *protocol.SignalAddress
}

func newPeer(s, them store.Store) *peer {
	return &peer{s: s, ser: serialize.NewProtoBufSerializer(), them: them.Account().JID.SignalAddress()}
}

func (p *peer) cipher() *session.Cipher {
	return session.NewCipher(session.NewBuilderFromSignal(p.s, p.them, p.ser), p.them)
}

func (p *peer) startSession(tb testing.TB, bundle *prekey.Bundle) {
	tb.Helper()
	if err := session.NewBuilderFromSignal(p.s, p.them, p.ser).ProcessBundle(context.Background(), bundle); err != nil {
		tb.Fatalf("ProcessBundle: %v", err)
	}
}

func (p *peer) encrypt(tb testing.TB, ctx context.Context, plaintext []byte) []byte {
	tb.Helper()
	msg, err := p.cipher().Encrypt(ctx, plaintext)
	if err != nil {
		tb.Fatalf("Encrypt: %v", err)
	}
	return msg.Serialize()
}

// decrypt takes a serialized message of either kind, as it would come off the wire.
func (p *peer) decrypt(ctx context.Context, ciphertext []byte, preKey bool) ([]byte, error) {
	if preKey {
		msg, err := protocol.NewPreKeySignalMessageFromBytes(ciphertext, p.ser.PreKeySignalMessage, p.ser.SignalMessage)
		if err != nil {
			return nil, err
		}
		return p.cipher().DecryptMessage(ctx, msg)
	}
	msg, err := protocol.NewSignalMessageFromBytes(ciphertext, p.ser.SignalMessage)
	if err != nil {
		return nil, err
	}
	return p.cipher().Decrypt(ctx, msg)
}

// converse sets up a session from a to b and exchanges one message each way, so both
// hold an established session.
func converse(tb testing.TB, a, b store.Store) (pa, pb *peer) {
	tb.Helper()
	ctx := context.Background()
	pa, pb = newPeer(a, b), newPeer(b, a)
	pa.startSession(tb, bundleFor(tb, b))
	if got, err := pb.decrypt(ctx, pa.encrypt(tb, ctx, []byte("hello")), true); err != nil || string(got) != "hello" {
		tb.Fatalf("first message: got %q, %v", got, err)
	}
	if got, err := pa.decrypt(ctx, pb.encrypt(tb, ctx, []byte("hi")), false); err != nil || string(got) != "hi" {
		tb.Fatalf("reply: got %q, %v", got, err)
	}
	return pa, pb
}

// sessionBytes is the serialized session of s with addr ("" when there is none).
func sessionBytes(tb testing.TB, ctx context.Context, s store.Store, addr *protocol.SignalAddress) []byte {
	tb.Helper()
	rec, err := s.LoadSession(ctx, addr)
	if err != nil {
		tb.Fatalf("LoadSession: %v", err)
	}
	if rec.IsFresh() {
		return nil
	}
	return rec.Serialize()
}

func sameSession(a, b *record.Session) bool { return bytes.Equal(a.Serialize(), b.Serialize()) }

// countRows counts the rows of table owned by account j.
func countRows(tb testing.TB, c *Container, table string, j jid.JID) int {
	tb.Helper()
	var n int
	col := "account_jid"
	if table == "interop_account" {
		col = "jid"
	}
	err := c.db.QueryRow(context.Background(), "SELECT COUNT(*) FROM "+table+" WHERE "+col+"=$1", j.String()).Scan(&n)
	if err != nil {
		tb.Fatalf("count %s: %v", table, err)
	}
	return n
}

var allTables = []string{
	"interop_account", "interop_identity", "interop_session", "interop_prekey", "interop_signed_prekey",
	"interop_sender_key", "interop_sender_key_holder", "interop_sent_message",
}

func mustAccount(tb testing.TB, c *Container, j jid.JID) *store.Account {
	tb.Helper()
	acc, err := c.GetAccount(context.Background(), j)
	if err != nil {
		tb.Fatal(err)
	}
	return acc
}
