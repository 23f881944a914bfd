package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.mau.fi/libsignal/groups"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// TestSenderKeys sends a group message from Alice to Bob through the stores, then
// resets Alice's key.
func TestSenderKeys(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		ser := serialize.NewProtoBufSerializer()
		group := jid.MustParse("120363000000000001@g.us")
		aliceKey := protocol.NewSenderKeyName(group.String(), aliceJID.SignalAddress())
		bobKey := protocol.NewSenderKeyName(group.String(), bobJID.SignalAddress())

		if rec, err := alice.LoadSenderKey(ctx, aliceKey); err != nil || rec == nil || !rec.IsEmpty() {
			t.Fatalf("LoadSenderKey of a missing key = %v, %v; want an empty record", rec, err)
		}
		skdm, err := groups.NewGroupSessionBuilder(alice, ser).Create(ctx, aliceKey)
		if err != nil {
			t.Fatal(err)
		}
		// Bob processes the distribution message (normally inside a 1:1 message).
		skdm, err = protocol.NewSenderKeyDistributionMessageFromBytes(skdm.Serialize(), ser.SenderKeyDistributionMessage)
		if err != nil {
			t.Fatal(err)
		}
		if err = groups.NewGroupSessionBuilder(bob, ser).Process(ctx, aliceKey, skdm); err != nil {
			t.Fatal(err)
		}
		for i, text := range []string{"one", "two"} {
			// Encrypt and decrypt on reopened stores: sender keys must round-trip SQL.
			aliceS, bobS := reopen(t, c, alice), reopen(t, c, bob)
			ct, err := groups.NewGroupCipher(groups.NewGroupSessionBuilder(aliceS, ser), aliceKey, aliceS).Encrypt(ctx, []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			msg, err := protocol.NewSenderKeyMessageFromBytes(ct.SignedSerialize(), ser.SenderKeyMessage)
			if err != nil {
				t.Fatal(err)
			}
			got, err := groups.NewGroupCipher(groups.NewGroupSessionBuilder(bobS, ser), aliceKey, bobS).Decrypt(ctx, msg)
			if err != nil || string(got) != text {
				t.Fatalf("group message %d: %q, %v", i, got, err)
			}
		}
		// Bob's own key in Alice's store must survive Alice's reset.
		bobSKDM, err := groups.NewGroupSessionBuilder(bob, ser).Create(ctx, bobKey)
		if err != nil {
			t.Fatal(err)
		}
		if err = groups.NewGroupSessionBuilder(alice, ser).Process(ctx, bobKey, bobSKDM); err != nil {
			t.Fatal(err)
		}

		holders := []jid.JID{bobJID, bobJID.WithDevice(5)}
		if err = alice.AddSenderKeyHolders(ctx, group, holders); err != nil {
			t.Fatal(err)
		}
		if err = alice.AddSenderKeyHolders(ctx, group, []jid.JID{bobJID, carolJID}); err != nil {
			t.Fatalf("adding an existing holder again: %v", err)
		}
		otherGroup := jid.MustParse("120363000000000002@g.us")
		if err = alice.AddSenderKeyHolders(ctx, otherGroup, []jid.JID{carolJID}); err != nil {
			t.Fatal(err)
		}
		got, err := alice.SenderKeyHolders(ctx, group)
		want := map[jid.JID]struct{}{bobJID: {}, bobJID.WithDevice(5): {}, carolJID: {}}
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("SenderKeyHolders = %v, %v; want %v", got, err, want)
		}

		if err = alice.ResetSenderKey(ctx, group); err != nil {
			t.Fatal(err)
		}
		if got, err = alice.SenderKeyHolders(ctx, group); err != nil || len(got) != 0 {
			t.Errorf("holders after reset = %v, %v", got, err)
		}
		if got, err = alice.SenderKeyHolders(ctx, otherGroup); err != nil || len(got) != 1 {
			t.Errorf("reset of one group touched another: %v, %v", got, err)
		}
		if rec, err := alice.LoadSenderKey(ctx, aliceKey); err != nil || !rec.IsEmpty() {
			t.Errorf("own sender key after reset: empty=%v, %v", rec.IsEmpty(), err)
		}
		if rec, err := alice.LoadSenderKey(ctx, bobKey); err != nil || rec.IsEmpty() {
			t.Errorf("reset dropped another member's sender key: %v", err)
		}
	})
}

// TestManySenderKeyHolders records a big group's devices at once: more than one
// INSERT's worth, some already recorded and some given twice, and a group of one.
func TestManySenderKeyHolders(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice := newStore(t, c, aliceJID)
		group := jid.MustParse("120363000000000001@g.us")
		device := func(i int) jid.JID {
			return jid.New(strconv.Itoa(491600000000+i/2), jid.ServerGateway).WithDevice(uint16(i % 2))
		}
		var first, second []jid.JID
		for i := range 2*holderChunk + 100 {
			if i < 300 {
				first = append(first, device(i))
			}
			if i >= 200 {
				second = append(second, device(i))
			}
		}
		second = append(second, second[:10]...) // repeated within one call
		if err := alice.AddSenderKeyHolders(ctx, group, first); err != nil {
			t.Fatal(err)
		}
		if err := alice.AddSenderKeyHolders(ctx, group, second); err != nil {
			t.Fatalf("adding %d holders, 100 of them known: %v", len(second), err)
		}
		got, err := alice.SenderKeyHolders(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2*holderChunk+100 {
			t.Fatalf("%d holders recorded, want %d", len(got), 2*holderChunk+100)
		}
		for i := range 2*holderChunk + 100 {
			if _, ok := got[device(i)]; !ok {
				t.Fatalf("holder %s is missing", device(i))
			}
		}
		other := jid.MustParse("120363000000000002@g.us")
		if err := alice.AddSenderKeyHolders(ctx, other, []jid.JID{carolJID}); err != nil {
			t.Fatal(err)
		}
		if err := alice.AddSenderKeyHolders(ctx, other, nil); err != nil {
			t.Fatalf("adding no holders: %v", err)
		}
		if got, err := alice.SenderKeyHolders(ctx, other); err != nil || !maps.Equal(got, map[jid.JID]struct{}{carolJID: {}}) {
			t.Fatalf("holders of the other group = %v, %v; want only %s", got, err, carolJID)
		}
	})
}

func TestSentMessages(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		now := time.UnixMilli(time.Now().UnixMilli())
		group := jid.MustParse("120363000000000001@g.us")
		msgs := []*store.SentMessage{
			{Chat: bobJID.ToUser(), ID: "old", Plaintext: []byte("a"), SentAt: now.Add(-48 * time.Hour)},
			{Chat: bobJID.ToUser(), ID: "new", Plaintext: []byte("b"), SentAt: now},
			{Chat: group, ID: "new", Plaintext: []byte("c"), SentAt: now.Add(-time.Minute)}, // same id, other chat
			{Chat: carolJID, ID: "empty", Plaintext: nil, SentAt: now},
		}
		for _, m := range msgs {
			if err := alice.PutSentMessage(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range msgs {
			got, err := alice.GetSentMessage(ctx, m.Chat, m.ID)
			if err != nil || got.Chat != m.Chat || got.ID != m.ID || !bytes.Equal(got.Plaintext, m.Plaintext) || !got.SentAt.Equal(m.SentAt) {
				t.Errorf("GetSentMessage(%s, %s) = %+v, %v; want %+v", m.Chat, m.ID, got, err, m)
			}
		}
		if _, err := bob.GetSentMessage(ctx, bobJID.ToUser(), "new"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("another account's message: %v, want ErrNotFound", err)
		}
		// Putting again replaces (a resend under the same id).
		replaced := &store.SentMessage{Chat: group, ID: "new", Plaintext: []byte("c2"), SentAt: now}
		if err := alice.PutSentMessage(ctx, replaced); err != nil {
			t.Fatal(err)
		}
		if got, err := alice.GetSentMessage(ctx, group, "new"); err != nil || string(got.Plaintext) != "c2" {
			t.Errorf("after replace: %+v, %v", got, err)
		}
		if err := alice.PruneSentMessages(ctx, now.Add(-24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, m := range msgs {
			if _, err := alice.GetSentMessage(ctx, m.Chat, m.ID); err == nil {
				left = append(left, m.Chat.String()+"/"+m.ID)
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Fatal(err)
			}
		}
		want := []string{bobJID.ToUser().String() + "/new", group.String() + "/new", carolJID.String() + "/empty"}
		if !slices.Equal(left, want) {
			t.Errorf("after prune: %v, want %v", left, want)
		}
	})
}
