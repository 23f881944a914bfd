package sqlstore

import (
	"context"
	"errors"
	"testing"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// TestCorruptRows: a damaged row must come back as an error, never as a panic or a
// half-decoded record.
func TestCorruptRows(t *testing.T) {
	group := jid.MustParse("120363000000000001@g.us")
	loads := []struct {
		table, column string
		load          func(ctx context.Context, s store.Store) error
	}{
		{"interop_session", "session", func(ctx context.Context, s store.Store) error {
			_, err := s.LoadSession(ctx, bobJID.SignalAddress())
			return err
		}},
		{"interop_prekey", "record", func(ctx context.Context, s store.Store) error {
			_, err := s.UnuploadedPreKeys(ctx)
			return err
		}},
		{"interop_signed_prekey", "record", func(ctx context.Context, s store.Store) error {
			_, err := s.LatestSignedPreKey(ctx)
			return err
		}},
		{"interop_sender_key", "record", func(ctx context.Context, s store.Store) error {
			// A record without states is a valid empty record, which libsignal treats
			// as "no sender key"; that is an acceptable outcome too.
			rec, err := s.LoadSenderKey(ctx, protocol.NewSenderKeyName(group.String(), aliceJID.SignalAddress()))
			if err == nil && rec.IsEmpty() {
				return errors.New("empty")
			}
			return err
		}},
		{"interop_identity", "identity", func(ctx context.Context, s store.Store) error {
			_, err := s.IsTrustedIdentity(ctx, bobJID.SignalAddress(), s.GetIdentityKeyPair().PublicKey())
			return err
		}},
	}
	garbage := map[string][]byte{
		"empty":        {},
		"not json":     {0xff, 0x00, 0x13},
		"empty object": []byte("{}"),
		"null":         []byte("null"),
		"wrong shape":  []byte(`{"SessionState":{"RootKey":"AA=="},"PreviousStates":[null]}`),
	}
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		fill(t, alice, bob)
		if _, err := alice.GeneratePreKeys(ctx, 1); err != nil {
			t.Fatal(err)
		}
		for _, l := range loads {
			for name, raw := range garbage {
				_, err := c.db.Exec(ctx, "UPDATE "+l.table+" SET "+l.column+"=$1 WHERE account_jid=$2", raw, aliceJID.String())
				if err != nil {
					t.Fatal(err)
				}
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Errorf("%s, %s: panic: %v", l.table, name, r)
						}
					}()
					if err := l.load(ctx, reopen(t, c, alice)); err == nil {
						t.Errorf("%s, %s: no error", l.table, name)
					}
				}()
			}
		}
	})
}
