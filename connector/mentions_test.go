package connector

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// namingMatrix names ghosts as the bridge's appservice does, @metainterop_{id}.
type namingMatrix struct{ *stubMatrix }

func (namingMatrix) FormatGhostMXID(user networkid.UserID) id.UserID {
	return id.NewUserID("metainterop_"+id.EncodeUserLocalpart(string(user)), "test.invalid")
}

func (namingMatrix) ParseGhostMXID(userID id.UserID) (networkid.UserID, bool) {
	rest, ok := strings.CutPrefix(userID.Localpart(), "metainterop_")
	if !ok || userID.Homeserver() != "test.invalid" {
		return "", false
	}
	decoded, err := id.DecodeUserLocalpart(rest)
	if err != nil {
		return "", false
	}
	return networkid.UserID(decoded), true
}

// mentionClient is a WhatsApp login of @alice with a bridge that names ghosts.
func mentionClient(t *testing.T) *InteropClient {
	t.Helper()
	c := newTestConnector(t, func(nc *config.NetworkConfig) { nc.Messenger = testSection(12, "Messenger") })
	br, mx := newTestBridge(t, sqltest.SQLite(t), c)
	br.Matrix = namingMatrix{mx}
	login := &bridgev2.UserLogin{UserLogin: &database.UserLogin{
		ID: "whatsapp:12-491701234567", UserMXID: "@alice:test.invalid", RemoteName: "+49 170 1234567",
	}}
	return newInteropClient(c, login, ids.WhatsApp, jid.Interop(12, "491701234567"))
}

func TestMentionResolver(t *testing.T) {
	ctx := context.Background()
	ic := mentionClient(t)
	r := mentionResolver{ic}
	peer := jid.New("491702220002", jid.ServerGateway)
	ghost := id.UserID("@metainterop_491702220002=40s.whatsapp.net:test.invalid")

	toJID := []struct {
		name   string
		userID id.UserID
		want   jid.JID
		ok     bool
	}{
		{"ghost", ghost, peer, true},
		{"own user", "@alice:test.invalid", ic.Account, true},
		{"other Matrix user", "@bob:test.invalid", jid.JID{}, false},
		{"Messenger ghost on a WhatsApp login", "@metainterop_100001=40msgr:test.invalid", jid.JID{}, false},
		{"not a ghost id", "@metainterop_nonsense:test.invalid", jid.JID{}, false},
	}
	for _, tc := range toJID {
		t.Run("ToJID/"+tc.name, func(t *testing.T) {
			got, ok := r.JIDForMXID(ctx, tc.userID)
			if ok != tc.ok || got != tc.want {
				t.Errorf("JIDForMXID(%s) = %s, %v; want %s, %v", tc.userID, got, ok, tc.want, tc.ok)
			}
		})
	}

	toUser := []struct {
		name    string
		j       jid.JID
		userID  id.UserID
		display string
		ok      bool
	}{
		{"Meta user", peer, ghost, "+49 170 2220002 (WhatsApp)", true},
		{"Meta user's device", peer.WithDevice(3), ghost, "+49 170 2220002 (WhatsApp)", true},
		{"own account", ic.Account, "@alice:test.invalid", "+49 170 1234567", true},
		{"another account", jid.Interop(12, "491709999999"), "", "", false},
		{"group", jid.New("120363000000000001", jid.ServerGroup), "", "", false},
	}
	for _, tc := range toUser {
		t.Run("ToUser/"+tc.name, func(t *testing.T) {
			userID, display, ok := r.GhostOrUserForJID(ctx, tc.j)
			if ok != tc.ok || userID != tc.userID || display != tc.display {
				t.Errorf("GhostOrUserForJID(%s) = %s, %q, %v; want %s, %q, %v", tc.j, userID, display, ok, tc.userID, tc.display, tc.ok)
			}
		})
	}
}

// Mentions cross both ways with the resolver: a Meta user's @mention of the Matrix
// user becomes a pill and m.mentions, and a Matrix pill of the ghost becomes
// @{number} with the mentioned JID.
func TestMentionConversion(t *testing.T) {
	ctx := context.Background()
	ic := mentionClient(t)
	r := mentionResolver{ic}
	conv := &msgconv.Converter{MessageID: ids.MakeMessageID, Mentions: r, Users: r}
	peer := jid.New("491702220002", jid.ServerGateway)
	ghost := id.UserID("@metainterop_491702220002=40s.whatsapp.net:test.invalid")

	in := &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
		Text:        proto.String("hello @12-491701234567"),
		ContextInfo: &waE2E.ContextInfo{MentionedJid: []string{ic.Account.String()}},
	}}
	got, err := conv.FromMeta(ctx, msgconv.MetaInfo{Chat: peer, Sender: peer}, in)
	if err != nil {
		t.Fatal(err)
	}
	content := got.Parts[0].Content
	if content.Body != "hello +49 170 1234567" {
		t.Errorf("body %q", content.Body)
	}
	if !strings.Contains(content.FormattedBody, `<a href="https://matrix.to/#/@alice:test.invalid">+49 170 1234567</a>`) {
		t.Errorf("formatted body %q has no pill", content.FormattedBody)
	}
	if content.Mentions == nil || len(content.Mentions.UserIDs) != 1 || content.Mentions.UserIDs[0] != "@alice:test.invalid" {
		t.Errorf("m.mentions %+v", content.Mentions)
	}

	out, err := conv.ToMeta(ctx, &event.MessageEventContent{MsgType: event.MsgText, Body: "+49 170 2220002 (WhatsApp) hi",
		Format: event.FormatHTML, FormattedBody: `<a href="https://matrix.to/#/` + ghost.String() + `">+49 170 2220002 (WhatsApp)</a> hi`,
		Mentions: &event.Mentions{UserIDs: []id.UserID{ghost}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ext := out.GetExtendedTextMessage()
	if ext.GetText() != "@491702220002 hi" {
		t.Errorf("text %q", ext.GetText())
	}
	if m := ext.GetContextInfo().GetMentionedJid(); len(m) != 1 || m[0] != peer.String() {
		t.Errorf("mentioned %v", m)
	}
}
