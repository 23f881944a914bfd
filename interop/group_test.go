package interop

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// distributedTo lists the devices a group stanza carries 1:1 encs for.
func distributedTo(n stanza.Node) []jid.JID {
	var out []jid.JID
	if parts, ok := n.Child("participants"); ok {
		for _, to := range parts.ChildrenByTag("to") {
			out = append(out, jid.MustParse(to.Attr("jid")))
		}
	}
	return out
}

func (ta *testAccount) sendGroup(t testing.TB, members []jid.JID, text string) SendResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := ta.SendGroupMessage(ctx, groupJID, members, "", textMsg(text), SendOptions{})
	if err != nil {
		t.Fatalf("%s → group: %v", ta.jid, err)
	}
	return res
}

func (ta *testAccount) receiveGroupText(t testing.TB, from jid.JID, want string) *DecryptedMessage {
	t.Helper()
	m := ta.receiveText(t, from, want)
	if !m.Info.IsGroup || m.Info.Chat != groupJID {
		t.Fatalf("%s: not a group message: %+v", ta.jid, m.Info)
	}
	return m
}

func TestGroupSend(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	bob1 := startNew(t, gw, bob1JID)
	carol := startNew(t, gw, carolJID)
	members := []jid.JID{aliceJID, bobJID, carolJID}
	gw.mu.Lock()
	gw.groups[groupJID] = slices.Clone(members)
	gw.mu.Unlock()

	// First message: every member device lacks the key.
	res := alice.sendGroup(t, members, "g1")
	n := lastSent(t, gw)
	all := []jid.JID{bobJID, bob1JID, carolJID}
	if got := distributedTo(n); !slices.Equal(got, all) {
		t.Fatalf("distributions to %v", got)
	}
	if sk, ok := n.Child("enc"); !ok || sk.Attr("type") != "skmsg" || sk.Attr("v") != "2" {
		t.Fatalf("no skmsg directly inside <message>: %v", n.Children())
	}
	if n.Attr("phash") != vectorPHash(all...) || n.Attr("to") != groupJID.String() {
		t.Fatalf("group stanza attrs %v", n.Attrs)
	}
	if res.Distributions != 3 || !slices.Equal(res.Devices, all) {
		t.Fatalf("result %+v", res)
	}
	for _, ta := range []*testAccount{bob, bob1, carol} {
		if m := ta.receiveGroupText(t, aliceJID, "g1"); m.EncType != signal.TypeSenderKey || m.Info.ID != res.ID {
			t.Fatalf("%s got %+v", ta.jid, m)
		}
	}

	// Second: everyone holds the key; only the skmsg.
	alice.sendGroup(t, members, "g2")
	if got := distributedTo(lastSent(t, gw)); len(got) != 0 {
		t.Fatalf("second message distributes to %v", got)
	}
	for _, ta := range []*testAccount{bob, bob1, carol} {
		ta.receiveGroupText(t, aliceJID, "g2")
	}

	// Dave joins: only he gets the key.
	dave := startNew(t, gw, daveJID)
	members = append(members, daveJID)
	gw.mu.Lock()
	gw.groups[groupJID] = slices.Clone(members)
	gw.mu.Unlock()
	res = alice.sendGroup(t, members, "g3")
	if got := distributedTo(lastSent(t, gw)); !slices.Equal(got, []jid.JID{daveJID}) {
		t.Fatalf("third message distributes to %v", got)
	}
	for _, ta := range []*testAccount{bob, bob1, carol, dave} {
		ta.receiveGroupText(t, aliceJID, "g3")
	}

	// Carol is removed: a new key, given to the remaining members only.
	members = []jid.JID{aliceJID, bobJID, daveJID}
	gw.mu.Lock()
	gw.groups[groupJID] = slices.Clone(members)
	gw.mu.Unlock()
	if err := alice.ResetGroupSenderKey(context.Background(), groupJID); err != nil {
		t.Fatal(err)
	}
	alice.sendGroup(t, members, "g4")
	if got := distributedTo(lastSent(t, gw)); !slices.Equal(got, []jid.JID{bobJID, bob1JID, daveJID}) {
		t.Fatalf("after the reset distributes to %v", got)
	}
	for _, ta := range []*testAccount{bob, bob1, dave} {
		ta.receiveGroupText(t, aliceJID, "g4")
	}
	select {
	case d := <-carol.delivered:
		t.Fatalf("removed member got %+v", d.m)
	case <-time.After(20 * time.Millisecond):
	}

	// A member answers in the group: alice reads it with bob's key.
	bob.sendGroup(t, members, "from bob")
	alice.receiveGroupText(t, bobJID, "from bob")
}

func TestGroupRetryCarriesTheKey(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	members := []jid.JID{aliceJID, bobJID}
	gw.mu.Lock()
	gw.groups[groupJID] = members
	gw.mu.Unlock()

	// Bob gets the key but the skmsg is damaged: he asks for a retry in the group.
	gw.corruptNext(bobJID, "skmsg", 1)
	res := alice.sendGroup(t, members, "damaged")
	if d := bob.nextDelivery(t); d.m.Undecryptable == nil {
		t.Fatalf("damaged skmsg delivered: %+v", d.m)
	}
	bob.nextHandled(t)
	waitUntil(t, func() bool { return len(gw.sentReceipts()) > 0 })
	if r := lastReceipt(t, gw); r.Attr("to") != groupJID.String() || r.Attr("participant") != aliceJID.String() {
		t.Fatalf("group retry receipt %v", r.Attrs)
	}
	m := bob.receiveGroupText(t, aliceJID, "damaged")
	if m.RetryCount != 1 || m.Info.ID != res.ID || m.EncType == signal.TypeSenderKey {
		t.Fatalf("retry answer %+v", m)
	}
	if evt := waitEvent[*RetryAnswered](t, alice); evt.Err != nil || evt.Chat != groupJID {
		t.Fatalf("retry event %+v", evt)
	}
	// Later skmsgs decrypt.
	alice.sendGroup(t, members, "later")
	bob.receiveGroupText(t, aliceJID, "later")
}

func TestGroupDistributionRecordedOnlyAfterAck(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	members := []jid.JID{aliceJID, bobJID}
	gw.mu.Lock()
	gw.groups[groupJID] = members
	gw.mu.Unlock()
	gw.refuseNext(aliceJID, stanza.Attrs{"error": "403", "reason": "not-opted-in"})
	if _, err := alice.SendGroupMessage(context.Background(), groupJID, members, "", textMsg("refused"), SendOptions{}); err == nil {
		t.Fatal("refusal not returned")
	}
	lacking, err := alice.Signal().DevicesLackingSenderKey(context.Background(), groupJID, []jid.JID{bobJID})
	if err != nil || !slices.Equal(lacking, []jid.JID{bobJID}) {
		t.Fatalf("after a refusal bob counts as holding the key: %v %v", lacking, err)
	}
	alice.sendGroup(t, members, "accepted")
	if got := distributedTo(lastSent(t, gw)); !slices.Equal(got, []jid.JID{bobJID}) {
		t.Fatalf("distributions %v", got)
	}
	bob.receiveGroupText(t, aliceJID, "accepted")
}
