package database

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

func stanzaIDs(in []*Incoming) []string {
	out := make([]string, len(in))
	for i, m := range in {
		out[i] = m.StanzaID
	}
	return out
}

func TestIncomingOutbox(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d, clk := open(t, raw)
		const login, other = "whatsapp:12-491701234567", "messenger:12-491701234567"
		const peer, dev = "491709876543@s.whatsapp.net", "491709876543:3@s.whatsapp.net"
		first := &Incoming{LoginID: login, Chat: peer, Sender: dev, StanzaID: "B1", Timestamp: time.UnixMilli(1_699_999_999_000),
			Type: "text", PushName: "Bob", Message: []byte{0x0a, 0x02, 'h', 'i'}}
		put := func(in *Incoming) {
			t.Helper()
			if err := d.PutIncoming(ctx, in); err != nil {
				t.Fatal(err)
			}
			clk.t = clk.t.Add(time.Second)
		}
		put(first)
		put(&Incoming{LoginID: login, Chat: peer, Sender: dev, StanzaID: "A2", Type: "text"}) // undecryptable, no t
		put(&Incoming{LoginID: other, Chat: "1000042@msgr", Sender: "1000042@msgr", StanzaID: "M1", Type: "text", Message: []byte{1}})
		put(&Incoming{LoginID: login, Chat: "120363@g.us", Sender: dev, StanzaID: "C3", IsGroup: true, Type: "media", MediaType: "image", Edit: "1", Message: []byte{2}})
		// A redelivery of B1 with other content is not stored again and keeps its place.
		put(&Incoming{LoginID: login, Chat: peer, Sender: dev, StanzaID: "B1", Type: "text", Message: []byte{9}})

		got, err := d.PendingIncoming(ctx, login)
		if err != nil {
			t.Fatal(err)
		}
		if ids := stanzaIDs(got); !slices.Equal(ids, []string{"B1", "A2", "C3"}) {
			t.Fatalf("pending %v, want arrival order B1 A2 C3", ids)
		}
		b := got[0]
		if b.Chat != peer || b.Sender != dev || b.IsGroup || !b.Timestamp.Equal(first.Timestamp) || b.Type != "text" ||
			b.PushName != "Bob" || !slices.Equal(b.Message, first.Message) || b.ReceivedAt.UnixMilli() != 1_700_000_000_000 {
			t.Errorf("B1 read back as %+v", b)
		}
		if a := got[1]; a.Message != nil || !a.Timestamp.IsZero() {
			t.Errorf("undecryptable A2 read back with message %x, timestamp %s", a.Message, a.Timestamp)
		}
		// The sender answers the retry receipt: A2 decrypted replaces the gap in place,
		// and a further copy does not change it again.
		put(&Incoming{LoginID: login, Chat: peer, Sender: dev, StanzaID: "A2", Type: "media", MediaType: "image", Message: []byte{7}})
		put(&Incoming{LoginID: login, Chat: peer, Sender: dev, StanzaID: "A2", Type: "text", Message: []byte{8}})
		if got, err = d.PendingIncoming(ctx, login); err != nil {
			t.Fatal(err)
		}
		if a := got[1]; a.StanzaID != "A2" || !slices.Equal(a.Message, []byte{7}) || a.Type != "media" || a.MediaType != "image" {
			t.Errorf("A2 after its retry answer: %+v", a)
		}
		if c := got[2]; !c.IsGroup || c.MediaType != "image" || c.Edit != "1" || c.Type != "media" {
			t.Errorf("C3 read back as %+v", c)
		}

		for want := 1; want <= 2; want++ {
			if n, err := d.IncomingFailed(ctx, login, peer, dev, "A2"); err != nil || n != want {
				t.Fatalf("failure %d counted as %d, %v", want, n, err)
			}
		}
		if n, err := d.IncomingFailed(ctx, login, peer, dev, "nope"); err != nil || n != 0 {
			t.Errorf("failure of an unknown message counted as %d, %v", n, err)
		}
		if got, err = d.PendingIncoming(ctx, login); err != nil || got[1].Attempts != 2 || got[0].Attempts != 0 {
			t.Errorf("attempts read back as %+v, %v", got, err)
		}

		for _, tc := range []struct {
			name                    string
			login, chat, sender, id string
			want                    []string
		}{
			{"unknown message", login, peer, dev, "nope", []string{"B1", "A2", "C3"}},
			{"same id of another login", other, peer, dev, "B1", []string{"B1", "A2", "C3"}},
			{"handled message", login, peer, dev, "B1", []string{"A2", "C3"}},
			{"handled twice", login, peer, dev, "B1", []string{"A2", "C3"}},
			{"last one", login, "120363@g.us", dev, "C3", []string{"A2"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := d.DeleteIncoming(ctx, tc.login, tc.chat, tc.sender, tc.id); err != nil {
					t.Fatal(err)
				}
				got, err := d.PendingIncoming(ctx, login)
				if err != nil {
					t.Fatal(err)
				}
				if ids := stanzaIDs(got); !slices.Equal(ids, tc.want) {
					t.Errorf("pending %v, want %v", ids, tc.want)
				}
			})
		}
		// An empty message (all it held was a sender key distribution) is still a
		// decrypted one, not a gap.
		put(&Incoming{LoginID: login, Chat: peer, Sender: dev, StanzaID: "E5", Type: "text", Message: []byte{}})
		if got, err := d.PendingIncoming(ctx, login); err != nil || len(got) != 2 || got[1].Message == nil || len(got[1].Message) != 0 {
			t.Fatalf("empty message read back as %+v, %v", got, err)
		}
		if err := d.DeleteIncoming(ctx, login, peer, dev, "E5"); err != nil {
			t.Fatal(err)
		}
		// After a delete the next message still comes after those left.
		put(&Incoming{LoginID: login, Chat: peer, Sender: dev, StanzaID: "D4", Type: "text", Message: []byte{3}})
		if got, err := d.PendingIncoming(ctx, login); err != nil || !slices.Equal(stanzaIDs(got), []string{"A2", "D4"}) {
			t.Errorf("pending %v, %v", stanzaIDs(got), err)
		}
		if err := d.DeleteLoginIncoming(ctx, login); err != nil {
			t.Fatal(err)
		}
		if got, err := d.PendingIncoming(ctx, login); err != nil || len(got) != 0 {
			t.Errorf("after the login's delete: %v, %v", stanzaIDs(got), err)
		}
		if got, err := d.PendingIncoming(ctx, other); err != nil || !slices.Equal(stanzaIDs(got), []string{"M1"}) {
			t.Errorf("the other login's: %v, %v", stanzaIDs(got), err)
		}
	})
}

// A message stored in a transaction that rolls back (deliver failed, or the ratchet
// step did not commit) is not kept: the stanza is not acked and comes again.
func TestIncomingRollsBackWithTxn(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d, _ := open(t, raw)
		const login = "whatsapp:12-491701234567"
		errAbort := context.Canceled
		err := raw.DoTxn(ctx, nil, func(ctx context.Context) error {
			if err := d.PutIncoming(ctx, &Incoming{LoginID: login, Chat: "a@s.whatsapp.net", Sender: "a@s.whatsapp.net", StanzaID: "X", Type: "text"}); err != nil {
				return err
			}
			return errAbort
		})
		if err != errAbort {
			t.Fatalf("txn returned %v", err)
		}
		if got, err := d.PendingIncoming(ctx, login); err != nil || len(got) != 0 {
			t.Errorf("rolled back message kept: %v, %v", stanzaIDs(got), err)
		}
	})
}
