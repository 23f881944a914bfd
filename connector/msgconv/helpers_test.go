package msgconv

import (
	"context"

	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// The people in the tests: two ghosts (a WhatsApp and a Messenger user) and one bridge
// user, each known to both resolvers; @stranger is known to neither.
const (
	ghostWA    = id.UserID("@meta_491701234567:example.org")
	ghostMsgr  = id.UserID("@meta_1000042:example.org")
	bridgeUser = id.UserID("@alice:example.org")
	stranger   = id.UserID("@stranger:example.org")
)

var (
	jidWA    = jid.MustParse("491701234567@s.whatsapp.net")
	jidMsgr  = jid.MustParse("1000042@msgr")
	jidAlice = jid.MustParse("12-491709999999@interop")
	jidBob   = jid.MustParse("491705555555@s.whatsapp.net") // known to nobody
)

type fakePeople struct{}

var people = []struct {
	mxid id.UserID
	jid  jid.JID
	name string
}{
	{ghostWA, jidWA, "Wanda <WA>"},
	{ghostMsgr, jidMsgr, "Max"},
	{bridgeUser, jidAlice, "Alice"},
}

func (fakePeople) JIDForMXID(_ context.Context, userID id.UserID) (jid.JID, bool) {
	for _, p := range people {
		if p.mxid == userID {
			return p.jid, true
		}
	}
	return jid.JID{}, false
}

func (fakePeople) GhostOrUserForJID(_ context.Context, j jid.JID) (id.UserID, string, bool) {
	for _, p := range people {
		if p.jid == j {
			return p.mxid, p.name, true
		}
	}
	return "", "", false
}

func testMessageID(chat, sender jid.JID, stanzaID string) networkid.MessageID {
	return networkid.MessageID(chat.String() + ":" + sender.String() + ":" + stanzaID)
}

func testConverter() *Converter {
	return &Converter{Mentions: fakePeople{}, Users: fakePeople{}, MessageID: testMessageID}
}
