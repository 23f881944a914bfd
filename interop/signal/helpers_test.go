package signal

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

func TestMain(m *testing.M) {
	RouteLibraryLogs(zerolog.Nop())
	os.Exit(m.Run())
}

var (
	aliceJID = jid.Interop(7, "33612345678")
	bob0JID  = jid.MustParse("491701234567@s.whatsapp.net")
	bob1JID  = jid.MustParse("491701234567:1@s.whatsapp.net")
	carolJID = jid.MustParse("1000042@msgr")
	groupJID = jid.MustParse("491701234567-1700000000@g.us")
)

// newStoreFunc makes the store of a new account on one backend.
type newStoreFunc func(t testing.TB, j jid.JID) store.Store

// backend is one store implementation; open prepares a fresh database (if any) for
// one test and returns how to make accounts in it.
type backend struct {
	name string
	open func(t testing.TB) newStoreFunc
}

var memBackend = backend{name: "mem", open: func(testing.TB) newStoreFunc {
	return func(t testing.TB, j jid.JID) store.Store {
		acc, err := memstore.NewAccount(j)
		if err != nil {
			t.Fatal(err)
		}
		return memstore.New(acc)
	}
}}

// sqlBackend runs on a throwaway database of one engine, all accounts in it.
func sqlBackend(b sqltest.Backend) backend {
	return backend{name: b.Name, open: func(t testing.TB) newStoreFunc {
		c := sqlstore.New(b.Open(t), zerolog.Nop())
		if err := c.Upgrade(context.Background()); err != nil {
			t.Fatal(err)
		}
		return func(t testing.TB, j jid.JID) store.Store {
			ctx := context.Background()
			// A reinstall in a test recreates an account under the same JID.
			if _, err := c.GetAccount(ctx, j); err == nil {
				if err = c.DeleteAccount(ctx, j); err != nil {
					t.Fatal(err)
				}
			}
			acc, err := c.CreateAccount(ctx, j)
			if err != nil {
				t.Fatal(err)
			}
			return c.StoreFor(acc)
		}
	}}
}

// allBackends is memstore, SQLite and PostgreSQL.
func allBackends() []backend {
	out := []backend{memBackend}
	for _, b := range sqltest.Backends() {
		out = append(out, sqlBackend(b))
	}
	return out
}

// forEachBackend runs fn as one subtest per backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, newStore newStoreFunc)) {
	for _, b := range allBackends() {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

type party struct {
	jid jid.JID
	m   *Manager
}

func newParty(t testing.TB, newStore newStoreFunc, j jid.JID) *party {
	t.Helper()
	return &party{jid: j, m: New(newStore(t, j), zerolog.Nop())}
}

// connect makes from start sessions with each of to, from their bundles.
func connect(t testing.TB, from *party, to ...*party) {
	t.Helper()
	ctx := context.Background()
	for _, p := range to {
		b, err := p.m.OwnBundle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := from.m.ProcessBundle(ctx, p.jid, b); err != nil {
			t.Fatalf("ProcessBundle(%s): %v", p.jid, err)
		}
	}
}

func encrypt(t testing.TB, from, to *party, text string) EncryptedPart {
	t.Helper()
	part, err := from.m.Encrypt(context.Background(), to.jid, []byte(text))
	if err != nil {
		t.Fatalf("Encrypt %s → %s: %v", from.jid, to.jid, err)
	}
	return part
}

// decrypt delivers part to to and returns the plaintext it handled.
func decrypt(to, from *party, part EncryptedPart) (string, DecryptInfo, error) {
	var got string
	info, err := to.m.Decrypt(context.Background(), from.jid, part.Type, part.Ciphertext, func(_ context.Context, pt []byte) error {
		got = string(pt)
		return nil
	})
	return got, info, err
}

func mustDecrypt(t testing.TB, to, from *party, part EncryptedPart, want string) DecryptInfo {
	t.Helper()
	got, info, err := decrypt(to, from, part)
	if err != nil {
		t.Fatalf("Decrypt %s ← %s (%s): %v", to.jid, from.jid, part.Type, err)
	}
	if got != want {
		t.Fatalf("Decrypt %s ← %s = %q, want %q", to.jid, from.jid, got, want)
	}
	return info
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}
