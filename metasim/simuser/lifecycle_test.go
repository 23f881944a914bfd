package simuser

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
)

// TestSection8_BlockReportAndRefusals blocks and unblocks through the blocklist iq,
// reports spam, and checks that refusals come back as protocol errors.
func TestSection8_BlockReportAndRefusals(t *testing.T) {
	e := newEnv(t)
	alice := e.user("491701111111", 1)
	bob := e.user("491702222222", 1)
	ctx := ctxLong(t)

	must(t, e.mgr.Block(ctx, bob, alice, true))
	// Accepted as usual, never delivered, no delivery receipt (section 8).
	quiet := e.send(alice, bob, Content{Kind: ContentText, Text: "anyone there?"})
	e.expectNone(bob, Filter{ID: quiet.ID}, "a message from a blocked user")
	e.expectNone(alice, Filter{ID: quiet.ID, Kinds: receiptKind}, "a receipt from someone who blocked her")
	must(t, e.mgr.Block(ctx, bob, alice, false))
	loud := e.send(alice, bob, Content{Kind: ContentText, Text: "now?"})
	e.waitMsg(bob, loud.ID)
	must(t, e.mgr.ReportSpam(ctx, bob, []interop.SpamMessage{{ID: loud.ID, From: alice, T: time.Now()}}))

	// A Meta user who has not opted in cannot reach a third party: the gateway lists
	// no devices for it, and refuses it in groups with a per-participant 403.
	carol := jid.New("491703333333", jid.ServerGateway)
	_, err := e.mgr.CreateUser(ctx, carol, 1, UserOptions{})
	must(t, err)
	tp := e.thirdParty("491709999999")
	if _, err := e.mgr.Send(ctx, carol, tp.jid, Content{Kind: ContentText, Text: "hi"}); !errors.Is(err, interop.ErrNoDevices) {
		t.Fatalf("send without opt-in: %v, want no devices", err)
	}
	info, err := e.mgr.CreateGroup(ctx, carol, "Closed", []jid.JID{tp.jid, alice})
	must(t, err)
	if len(info.Participants) != 3 || info.Participants[2].JID != tp.jid || info.Participants[2].Error != 403 {
		t.Fatalf("group with a third party who may not be reached: %+v", info.Participants)
	}
	// The gateway's forced refusals come back as they are.
	e.gw.Faults().RefuseNextSends(alice, 1, 406, "")
	if _, err := e.mgr.Send(ctx, alice, bob, Content{Kind: ContentText, Text: "x"}); !errors.Is(err, errcode.ErrNotAcceptable) {
		t.Fatalf("refused send: %v, want 406", err)
	}
	for _, c := range []Content{
		{Kind: ContentText},
		{Kind: "sticker", Text: "x"},
		{Kind: ContentReaction, Text: "👍"},
		{Kind: ContentEdit, Target: &Ref{ID: loud.ID}},
		{Kind: ContentLocation},
		{Kind: ContentImage, Media: &MediaSpec{Width: 1 << 20, Height: 1}},
		{Kind: ContentDocument, Media: &MediaSpec{Size: -1}},
	} {
		if _, err := e.mgr.Send(ctx, alice, bob, c); !errors.Is(err, ErrBadContent) {
			t.Fatalf("content %+v: %v, want ErrBadContent", c, err)
		}
	}
	if _, err := e.mgr.Send(ctx, jid.New("491709999999", jid.ServerGateway), bob, Content{Kind: ContentText, Text: "x"}); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("send from an unknown device: %v", err)
	}
}

// TestSection3_UndecryptableRecorded has a third party send a ciphertext nobody can
// decrypt: the device records the failure (and sends a retry receipt, through its
// Account) instead of dropping it silently.
func TestSection3_UndecryptableRecorded(t *testing.T) {
	e := newEnv(t)
	alice := e.user("491701111111", 1)
	tp := e.thirdParty("491709999999")
	out := interop.OutgoingMessage{ID: interop.NewID(), To: alice.String(), Content: interop.ContentAttrs{Type: interop.MessageTypeText},
		PHash: signal.ParticipantHash([]jid.JID{alice}),
		Parts: []signal.EncryptedPart{{Device: alice, Type: signal.TypeMessage, Ciphertext: []byte("not a Signal message")}}}
	if _, err := tp.acc.Client().SendMessage(ctxLong(t), out.Node()); err != nil {
		t.Fatalf("the gateway refused the message: %v", err)
	}
	it := e.waitMsg(alice, out.ID)
	if it.Kind != KindError || it.Data.Error == "" || it.Sender != tp.jid || it.Chat != tp.jid {
		t.Fatalf("undecryptable message recorded as %+v", it)
	}
	// A real message still gets through afterwards.
	id := tp.send(t, alice, &waE2E.Message{Conversation: proto.String("readable")})
	if it := e.waitMsg(alice, id); it.Kind != KindText || it.Data.Text != "readable" {
		t.Fatalf("then alice got %+v", it)
	}
}

// TestSection5_IdentityAndDevices resets a device's identity (its contacts are told
// and still reach it), adds a device that then receives, and removes one that then
// does not.
func TestSection5_IdentityAndDevices(t *testing.T) {
	e := newEnv(t)
	alice := e.user("491701111111", 1)
	bob := e.user("491702222222", 2)
	ctx := ctxLong(t)
	first := e.send(alice, bob, Content{Kind: ContentText, Text: "before"})
	e.waitMsg(bob.WithDevice(1), first.ID)
	back := e.send(bob, alice, Content{Kind: ContentText, Text: "back"})
	e.waitMsg(alice, back.ID)

	must(t, e.mgr.ResetIdentity(ctx, bob))
	e.wait(alice, Filter{Kinds: []Kind{KindIdentity}}, "identity change", func(it Item) bool { return it.Chat == bob })
	after := e.send(alice, bob, Content{Kind: ContentText, Text: "after the reset"})
	if it := e.waitMsg(bob, after.ID); it.Data.Text != "after the reset" || it.Data.EncType != signal.TypePreKeyMessage {
		t.Fatalf("after the reset bob got %+v", it)
	}
	// The gateway announces the change for the whole user, so alice starts over with
	// every device of bob's (section 5).
	if it := e.waitMsg(bob.WithDevice(1), after.ID); it.Data.Text != "after the reset" {
		t.Fatalf("bob's other device got %+v", it)
	}
	reply := e.send(bob, alice, Content{Kind: ContentText, Text: "new keys"})
	e.waitMsg(alice, reply.ID)

	added, err := e.mgr.AddDevice(ctx, bob)
	must(t, err)
	if added != bob.WithDevice(2) {
		t.Fatalf("added %s", added)
	}
	toAll := e.send(alice, bob, Content{Kind: ContentText, Text: "three devices"})
	for _, d := range []jid.JID{bob, bob.WithDevice(1), added} {
		e.waitMsg(d, toAll.ID)
	}
	if got := e.mgr.Devices(bob); len(got) != 3 || !got[2].Ready || !got[2].Connected || got[2].JID != added {
		t.Fatalf("Devices: %+v", got)
	}

	must(t, e.mgr.RemoveDevice(ctx, bob.WithDevice(1)))
	if err := e.mgr.RemoveDevice(ctx, bob); !errors.Is(err, gateway.ErrPrimaryDevice) {
		t.Fatalf("removing the phone: %v", err)
	}
	toTwo := e.send(alice, bob, Content{Kind: ContentText, Text: "two devices"})
	e.waitMsg(added, toTwo.ID)
	e.expectNone(bob, Filter{Device: bob.WithDevice(1), ID: toTwo.ID}, "a message on a removed device")
	if len(toTwo.Devices) != 2 {
		t.Fatalf("sent to %v after the removal", toTwo.Devices)
	}
}

// TestRestart_KeepsSessions closes the gateway and the simulated users and reopens
// them on the same database: the users exchange messages with their old sessions
// (msg, not a new pkmsg), and the inbox survives, on SQLite and PostgreSQL.
func TestRestart_KeepsSessions(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		e := newEnvOn(t, db, false)
		alice := e.user("491701111111", 2)
		bob := e.user("491702222222", 1)
		hello := e.send(alice, bob, Content{Kind: ContentText, Text: "hello"})
		if it := e.waitMsg(bob, hello.ID); it.Data.EncType != signal.TypePreKeyMessage {
			t.Fatalf("first message was %s", it.Data.EncType)
		}
		hi := e.send(bob, alice, Content{Kind: ContentText, Text: "hi"})
		e.waitMsg(alice, hi.ID)
		e.waitMsg(alice.WithDevice(1), hi.ID)
		// A device that never answered still gets prekey messages (Signal keeps the
		// session pending until the first reply), so alice's companion answers too.
		companion := e.send(alice.WithDevice(1), bob, Content{Kind: ContentText, Text: "me too"})
		e.waitMsg(bob, companion.ID)
		must(t, e.mgr.SetAutoRead(ctxLong(t), bob, true))

		e.restart()

		again := e.send(alice, bob, Content{Kind: ContentText, Text: "after the restart"})
		if it := e.waitMsg(bob, again.ID); it.Data.EncType != signal.TypeMessage || it.Data.Text != "after the restart" {
			t.Fatalf("after the restart bob got %+v", it)
		}
		e.wait(alice, Filter{ID: again.ID, Kinds: receiptKind}, "automatic read receipt after the restart", isReceipt("read", bob))
		reply := e.send(bob, alice, Content{Kind: ContentText, Text: "still here"})
		for _, d := range []jid.JID{alice, alice.WithDevice(1)} {
			if it := e.waitMsg(d, reply.ID); it.Data.EncType != signal.TypeMessage {
				t.Fatalf("%s got %s after the restart", d, it.Data.EncType)
			}
		}
		if old, err := e.mgr.Inbox(context.Background(), bob, Filter{ID: hello.ID}); err != nil || len(old) != 1 || old[0].Data.Text != "hello" {
			t.Fatalf("inbox after the restart: %+v %v", old, err)
		}
	})
}

// TestMemoryStores_RestartMakesNewIdentities runs the in-memory mode: after a
// restart every device has a new identity, uploads it, and the users still reach
// each other with new sessions.
func TestMemoryStores_RestartMakesNewIdentities(t *testing.T) {
	e := newEnvOn(t, sqltest.SQLite(t), true)
	alice := e.user("491701111111", 1)
	bob := e.user("491702222222", 1)
	e.waitMsg(bob, e.send(alice, bob, Content{Kind: ContentText, Text: "one"}).ID)
	e.waitMsg(alice, e.send(bob, alice, Content{Kind: ContentText, Text: "two"}).ID)

	e.restart()

	after := e.send(alice, bob, Content{Kind: ContentText, Text: "three"})
	if it := e.waitMsg(bob, after.ID); it.Kind != KindText || it.Data.EncType != signal.TypePreKeyMessage {
		t.Fatalf("after an in-memory restart bob got %+v", it)
	}
}

// TestInboxFilters checks the inbox queries and WaitFor's cancellation.
func TestInboxFilters(t *testing.T) {
	e := newEnv(t)
	alice := e.user("491701111111", 1)
	bob := e.user("491702222222", 1)
	a := e.send(alice, bob, Content{Kind: ContentText, Text: "a"})
	b := e.send(alice, bob, Content{Kind: ContentLocation, Location: &Location{Latitude: 1, Longitude: 2}})
	e.waitMsg(bob, b.ID)
	e.waitMsg(bob, a.ID)
	ctx := context.Background()
	all, err := e.mgr.Inbox(ctx, bob, Filter{Kinds: messageKinds})
	must(t, err)
	if len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID || all[0].Seq >= all[1].Seq {
		t.Fatalf("inbox %+v", all)
	}
	for _, c := range []struct {
		f    Filter
		want int
	}{
		{Filter{Kinds: []Kind{KindLocation}}, 1},
		{Filter{ID: a.ID}, 1},
		{Filter{After: all[0].Seq, Kinds: messageKinds}, 1},
		{Filter{Chat: alice, Kinds: messageKinds, Limit: 1}, 1},
		{Filter{Device: bob.WithDevice(5)}, 0},
		{Filter{Chat: jid.New("1", jid.ServerGateway)}, 0},
	} {
		got, err := e.mgr.Inbox(ctx, bob, c.f)
		if err != nil || len(got) != c.want {
			t.Fatalf("Inbox(%+v) = %d items (%v), want %d", c.f, len(got), err, c.want)
		}
	}
	// Scanning in pages of one still finds a later item.
	paged, cancelPaged := context.WithTimeout(ctx, waitShort)
	defer cancelPaged()
	if it, err := e.mgr.WaitFor(paged, bob, Filter{Kinds: messageKinds, Limit: 1}, func(it Item) bool { return it.ID == b.ID }); err != nil || it.Seq != all[1].Seq {
		t.Fatalf("paged WaitFor: %+v %v", it, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := e.mgr.WaitFor(short, bob, Filter{ID: "nothing"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor without a match: %v", err)
	}
	must(t, e.mgr.ClearInbox(ctx, bob))
	if got, _ := e.mgr.Inbox(ctx, bob, Filter{}); len(got) != 0 {
		t.Fatalf("inbox after ClearInbox: %d items", len(got))
	}
	must(t, e.mgr.Close())
	if _, err := e.mgr.Send(ctx, alice, bob, Content{Kind: ContentText, Text: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
}
