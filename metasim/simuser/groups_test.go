package simuser

import (
	"errors"
	"slices"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
)

// isGroupChange matches a group notification of an action by actor.
func isGroupChange(action string, actor jid.JID) func(Item) bool {
	return func(it Item) bool {
		return it.Data.Group != nil && it.Data.Group.Action == action && it.Sender == actor
	}
}

var groupKind = []Kind{KindGroup}

// TestSection6_Groups runs every group operation of section 6 through the w:g2 iqs
// and checks that members see the notifications, that group messages travel with
// sender keys, and that a removed member no longer receives them.
func TestSection6_Groups(t *testing.T) {
	e := newEnv(t)
	alice := e.user("491701111111", 2)
	bob := e.user("491702222222", 1)
	carol := e.user("491703333333", 1)
	ctx := ctxLong(t)

	info, err := e.mgr.CreateGroup(ctx, alice, "Friends", []jid.JID{bob, carol})
	must(t, err)
	group := info.JID
	if !group.IsGroup() || info.Creator != alice || info.Subject != "Friends" || len(info.Participants) != 3 ||
		info.Participants[0] != (GroupParticipant{JID: alice, Role: "superadmin"}) {
		t.Fatalf("created %+v", info)
	}
	for _, u := range []jid.JID{bob, carol} {
		it := e.wait(u, Filter{Chat: group, Kinds: groupKind}, "create", isGroupChange("create", alice))
		if it.Data.Group.Subject != "Friends" || len(it.Data.Group.Participants) != 3 {
			t.Fatalf("%s: create notification %+v", u, it.Data.Group)
		}
	}
	// The creator's other device hears about it too.
	e.wait(alice, Filter{Device: alice.WithDevice(1), Chat: group, Kinds: groupKind}, "create", isGroupChange("create", alice))

	hello := e.send(alice, group, Content{Kind: ContentText, Text: "hello @491702222222", Mentions: []jid.JID{bob}})
	for _, u := range []jid.JID{bob, carol} {
		it := e.waitMsg(u, hello.ID)
		if it.Chat != group || it.Sender != alice || it.Data.EncType != signal.TypeSenderKey || it.Data.Text != "hello @491702222222" {
			t.Fatalf("%s got %+v", u, it)
		}
		e.wait(alice, Filter{Device: alice, ID: hello.ID, Kinds: receiptKind}, "group delivery receipt", func(it Item) bool {
			return it.Chat == group && it.Sender == u && it.Data.Receipt == "delivered"
		})
	}
	e.expectNone(alice, Filter{Device: alice.WithDevice(1), ID: hello.ID, Kinds: messageKinds}, "its own group message")

	reply := e.send(bob, group, Content{Kind: ContentText, Text: "hi", ReplyTo: &Ref{ID: hello.ID, Sender: alice, Text: "hello"}})
	for _, dev := range []jid.JID{alice, alice.WithDevice(1), carol} {
		if it := e.waitMsg(dev, reply.ID); it.Data.ReplyTo == nil || it.Data.ReplyTo.ID != hello.ID || it.Sender != bob {
			t.Fatalf("%s got the group reply as %+v", dev, it)
		}
	}
	react := e.send(carol, group, Content{Kind: ContentReaction, Text: "❤️", Target: &Ref{ID: hello.ID, Sender: alice}})
	if it := e.waitMsg(alice, react.ID); it.Data.Target == nil || it.Data.Target.Participant != alice.String() ||
		it.Data.Target.FromMe || it.Data.Target.RemoteJID != group.String() {
		t.Fatalf("group reaction arrived as %+v", it.Data.Target)
	}
	must(t, e.mgr.SendChatState(ctx, alice, group, interop.ChatComposing))
	e.wait(bob, Filter{Chat: group, Kinds: []Kind{KindChatState}}, "group typing", func(it Item) bool {
		return it.Sender == alice && it.Data.ChatState == "composing"
	})

	must(t, e.mgr.SetGroupSubject(ctx, bob, group, "New subject"))
	must(t, e.mgr.SetGroupDescription(ctx, alice, group, "What we talk about"))
	for _, u := range []jid.JID{alice, carol} {
		if it := e.wait(u, Filter{Chat: group, Kinds: groupKind}, "subject", isGroupChange("subject", bob)); it.Data.Group.Subject != "New subject" {
			t.Fatalf("subject notification %+v", it.Data.Group)
		}
	}
	if it := e.wait(bob, Filter{Chat: group, Kinds: groupKind}, "description", isGroupChange("description", alice)); it.Data.Group.Description != "What we talk about" {
		t.Fatalf("description notification %+v", it.Data.Group)
	}
	info, err = e.mgr.GroupInfo(ctx, carol, group)
	must(t, err)
	if info.Subject != "New subject" || info.Description != "What we talk about" {
		t.Fatalf("group info %+v", info)
	}

	// Only admins change members: bob is refused until promoted.
	if _, err := e.mgr.ChangeParticipants(ctx, bob, group, GroupRemove, []jid.JID{carol}); !errors.Is(err, errcode.ErrForbidden) {
		t.Fatalf("a member removed someone: %v", err)
	}
	res, err := e.mgr.ChangeParticipants(ctx, alice, group, GroupPromote, []jid.JID{bob})
	must(t, err)
	if len(res) != 1 || res[0].Error != 0 {
		t.Fatalf("promote: %+v", res)
	}
	e.wait(carol, Filter{Chat: group, Kinds: groupKind}, "promote", isGroupChange("promote", alice))
	res, err = e.mgr.ChangeParticipants(ctx, alice, group, GroupAdd, []jid.JID{jid.New("491709999999", jid.ServerGateway), carol})
	must(t, err)
	if len(res) != 2 || res[0].Error != 404 || res[1].Error != 409 {
		t.Fatalf("adding an unknown user and a member: %+v", res)
	}

	res, err = e.mgr.ChangeParticipants(ctx, bob, group, GroupRemove, []jid.JID{carol})
	must(t, err)
	if len(res) != 1 || res[0].Error != 0 {
		t.Fatalf("remove: %+v", res)
	}
	for _, u := range []jid.JID{alice, carol} {
		it := e.wait(u, Filter{Chat: group, Kinds: groupKind}, "remove", isGroupChange("remove", bob))
		if !slices.Equal(it.Data.Group.Participants, []string{carol.String()}) {
			t.Fatalf("remove notification %+v", it.Data.Group)
		}
	}
	// After the removal a new sender key goes to the remaining members only.
	after := e.send(alice, group, Content{Kind: ContentText, Text: "carol is gone"})
	if it := e.waitMsg(bob, after.ID); it.Data.Text != "carol is gone" {
		t.Fatalf("bob got %+v", it)
	}
	e.expectNone(carol, Filter{ID: after.ID}, "a message after her removal")
	fromBob := e.send(bob, group, Content{Kind: ContentText, Text: "bye carol"})
	e.waitMsg(alice.WithDevice(1), fromBob.ID)

	res, err = e.mgr.ChangeParticipants(ctx, alice, group, GroupDemote, []jid.JID{bob})
	must(t, err)
	if res[0].Error != 0 {
		t.Fatalf("demote: %+v", res)
	}
	e.wait(bob, Filter{Chat: group, Kinds: groupKind}, "demote", isGroupChange("demote", alice))
	must(t, e.mgr.LeaveGroup(ctx, bob, group))
	e.wait(alice, Filter{Chat: group, Kinds: groupKind}, "leave", isGroupChange("leave", bob))
	if _, err := e.mgr.Send(ctx, bob, group, Content{Kind: ContentText, Text: "still here?"}); err == nil {
		t.Fatal("a user who left sent to the group")
	}
	info, err = e.mgr.GroupInfo(ctx, alice, group)
	must(t, err)
	if len(info.Participants) != 1 || info.Participants[0].JID != alice {
		t.Fatalf("members after leave and remove: %+v", info.Participants)
	}
}
