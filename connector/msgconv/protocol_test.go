package msgconv

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// loadVectors reads shared/vectors/waE2E.json, which lives beside the repository root.
func loadVectors(t *testing.T) map[string][]byte {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for {
		raw, err = os.ReadFile(filepath.Join(dir, "shared", "vectors", "waE2E.json"))
		if err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("shared/vectors/waE2E.json not found in any parent directory")
		}
		dir = parent
	}
	var file struct {
		Vectors []struct {
			Name       string `json:"name"`
			EncodedHex string `json:"encoded_hex"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte)
	for _, v := range file.Vectors {
		b, err := hex.DecodeString(v.EncodedHex)
		if err != nil {
			t.Fatal(err)
		}
		out[v.Name] = b
	}
	return out
}

// TestVectors builds each comparable vector with this package and checks the bytes.
func TestVectors(t *testing.T) {
	vectors := loadVectors(t)
	conv := testConverter()
	ctx := context.Background()
	ours := MessageKey{RemoteJID: jidWA, FromMe: true, ID: "A1B2C3D4"}
	build := map[string]func() (*waE2E.Message, error){
		"text": func() (*waE2E.Message, error) {
			return conv.ToMeta(ctx, textContent("hello from matrix"), nil)
		},
		"reply_with_mention": func() (*waE2E.Message, error) {
			content := htmlContent(event.MsgText, "> <@meta_491701234567:example.org> are you there?\n\nyes Wanda, **see** _this_",
				`<mx-reply><blockquote>are you there?</blockquote></mx-reply>yes <a href="https://matrix.to/#/@meta_491701234567:example.org">Wanda</a>, <strong>see</strong> <em>this</em>`)
			content.RelatesTo = replyRelation()
			return conv.ToMeta(ctx, content, &ReplyTarget{StanzaID: "3EB0C0FFEE", Sender: jidWA, Text: "are you there?"})
		},
		"reaction": func() (*waE2E.Message, error) {
			// The variation selector Matrix clients add is dropped.
			return ReactionMessage(MessageKey{RemoteJID: jidWA, ID: "3EB0C0FFEE"}, "👍\ufe0f", time.UnixMilli(1764000000000))
		},
		"reaction_remove": func() (*waE2E.Message, error) {
			return ReactionMessage(ours, "", time.UnixMilli(1764000000001))
		},
		"edit": func() (*waE2E.Message, error) {
			return conv.EditToMeta(ctx, &event.MessageEventContent{MsgType: event.MsgText, Body: "* fixed typo",
				NewContent: textContent("fixed typo")}, ours, time.UnixMilli(1764000000002))
		},
		"revoke": func() (*waE2E.Message, error) { return RevokeMessage(ours) },
	}
	for name, fn := range build {
		t.Run(name, func(t *testing.T) {
			want, ok := vectors[name]
			if !ok {
				t.Fatalf("no vector %q", name)
			}
			msg, err := fn()
			if err != nil {
				t.Fatal(err)
			}
			got, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != hex.EncodeToString(want) {
				t.Fatalf("encoding mismatch\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestVectorsIncoming reads the vectors' edit, revoke and reactions as if the WhatsApp
// user had sent them to the bridge user.
func TestVectorsIncoming(t *testing.T) {
	vectors := loadVectors(t)
	conv := testConverter()
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	decode := func(name string) *waE2E.Message {
		var msg waE2E.Message
		if err := proto.Unmarshal(vectors[name], &msg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return &msg
	}
	own := networkid.MessageID("491701234567@s.whatsapp.net:491701234567@s.whatsapp.net:A1B2C3D4")
	r, err := conv.ReactionFromMeta(info, decode("reaction").GetReactionMessage())
	if err != nil || r.Emoji != "👍\ufe0f" || r.Remove || r.Timestamp.UnixMilli() != 1764000000000 ||
		r.Target != "491701234567@s.whatsapp.net:491701234567@s.whatsapp.net:3EB0C0FFEE" {
		t.Fatalf("reaction = %+v, %v", r, err)
	}
	r, err = conv.ReactionFromMeta(info, decode("reaction_remove").GetReactionMessage())
	if err != nil || !r.Remove || r.Emoji != "" || r.Target != own {
		t.Fatalf("reaction remove = %+v, %v", r, err)
	}
	res, err := conv.ProtocolFromMeta(info, decode("edit").GetProtocolMessage())
	if e, ok := res.(*Edit); err != nil || !ok || e.Target != own || TextOnly(e.Content) != "fixed typo" ||
		e.Timestamp.UnixMilli() != 1764000000002 {
		t.Fatalf("edit = %+v, %v", res, err)
	}
	res, err = conv.ProtocolFromMeta(info, decode("revoke").GetProtocolMessage())
	if rv, ok := res.(*Revoke); err != nil || !ok || rv.Target != own {
		t.Fatalf("revoke = %+v, %v", res, err)
	}
}

func key(remote string, fromMe bool, id, participant string) *waE2E.MessageKey {
	k := &waE2E.MessageKey{RemoteJid: proto.String(remote), FromMe: proto.Bool(fromMe), Id: proto.String(id)}
	if participant != "" {
		k.Participant = proto.String(participant)
	}
	return k
}

func TestReactionFromMeta(t *testing.T) {
	group := jid.MustParse("120363000000000001@g.us")
	cases := []struct {
		name   string
		info   MetaInfo
		r      *waE2E.ReactionMessage
		target networkid.MessageID
		emoji  string
		remove bool
		err    error
	}{
		{"to bridge user's message", MetaInfo{jidWA, jidWA},
			&waE2E.ReactionMessage{Key: key(jidAlice.String(), false, "X1", ""), Text: proto.String("❤")},
			"491701234567@s.whatsapp.net:12-491709999999@interop:X1", "❤\ufe0f", false, nil},
		{"to own message", MetaInfo{jidMsgr, jidMsgr.WithDevice(2)},
			&waE2E.ReactionMessage{Key: key(jidAlice.String(), true, "X2", ""), Text: proto.String("😂")},
			"1000042@msgr:1000042@msgr:X2", "😂", false, nil},
		{"in group", MetaInfo{group, jidWA},
			&waE2E.ReactionMessage{Key: key(group.String(), false, "X3", jidAlice.String()), Text: proto.String("")},
			"120363000000000001@g.us:12-491709999999@interop:X3", "", true, nil},
		{"group without participant", MetaInfo{group, jidWA},
			&waE2E.ReactionMessage{Key: key(group.String(), false, "X4", ""), Text: proto.String("👍")}, "", "", false, ErrInvalid},
		{"no id", MetaInfo{jidWA, jidWA}, &waE2E.ReactionMessage{Key: key(jidAlice.String(), false, "", "")}, "", "", false, ErrInvalid},
		{"bad remote", MetaInfo{jidWA, jidWA}, &waE2E.ReactionMessage{Key: key("nonsense", false, "X", "")}, "", "", false, ErrInvalid},
		{"bad participant", MetaInfo{group, jidWA}, &waE2E.ReactionMessage{Key: key(group.String(), false, "X", "@@")}, "", "", false, ErrInvalid},
		{"nil", MetaInfo{jidWA, jidWA}, nil, "", "", false, ErrInvalid},
	}
	conv := testConverter()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := conv.ReactionFromMeta(tc.info, tc.r)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got.Target != tc.target || got.Emoji != tc.emoji || got.Remove != tc.remove {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestProtocolFromMetaRefusals(t *testing.T) {
	conv := testConverter()
	info := MetaInfo{jidWA, jidWA}
	cases := []struct {
		name string
		pm   *waE2E.ProtocolMessage
		err  error
	}{
		{"no type", &waE2E.ProtocolMessage{Key: key(jidAlice.String(), true, "X", "")}, ErrInvalid},
		{"edit of other's message", &waE2E.ProtocolMessage{Key: key(jidAlice.String(), false, "X", ""),
			Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), EditedMessage: conversation("x")}, ErrInvalid},
		{"edit without content", &waE2E.ProtocolMessage{Key: key(jidAlice.String(), true, "X", ""),
			Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum()}, ErrInvalid},
		{"unknown type", &waE2E.ProtocolMessage{Key: key(jidAlice.String(), true, "X", ""),
			Type: waE2E.ProtocolMessage_Type(5).Enum()}, ErrUnsupported},
		{"nil", nil, ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conv.ProtocolFromMeta(info, tc.pm); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
	if _, err := (&Converter{}).ProtocolFromMeta(info, &waE2E.ProtocolMessage{Key: key(jidAlice.String(), true, "X", ""),
		Type: waE2E.ProtocolMessage_REVOKE.Enum()}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("without MessageID func: err = %v", err)
	}
}

func TestBuildersRefuseIncompleteKeys(t *testing.T) {
	for _, k := range []MessageKey{{}, {RemoteJID: jidWA}, {ID: "X"}} {
		if _, err := RevokeMessage(k); !errors.Is(err, ErrInvalid) {
			t.Fatalf("revoke %+v: %v", k, err)
		}
		if _, err := ReactionMessage(k, "👍", time.Now()); !errors.Is(err, ErrInvalid) {
			t.Fatalf("reaction %+v: %v", k, err)
		}
		if _, err := EditMessage(k, conversation("x"), time.Now()); !errors.Is(err, ErrInvalid) {
			t.Fatalf("edit %+v: %v", k, err)
		}
	}
	group := jid.MustParse("120363000000000001@g.us")
	msg, err := RevokeMessage(MessageKey{RemoteJID: group, ID: "X", Participant: jidWA.WithDevice(3)})
	if err != nil || msg.GetProtocolMessage().GetKey().GetParticipant() != "491701234567:3@s.whatsapp.net" {
		t.Fatalf("group revoke = %v, %v", msg, err)
	}
}

func TestTextOnly(t *testing.T) {
	cases := []struct {
		msg  *waE2E.Message
		want string
	}{
		{nil, ""},
		{conversation("hi"), "hi"},
		{extended("ext", nil), "ext"},
		{&waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("cat")}}, "Image: cat"},
		{&waE2E.Message{VideoMessage: &waE2E.VideoMessage{}}, "Video"},
		{&waE2E.Message{AudioMessage: &waE2E.AudioMessage{Ptt: proto.Bool(true)}}, "Voice message"},
		{&waE2E.Message{AudioMessage: &waE2E.AudioMessage{}}, "Audio"},
		{&waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String("r.pdf"), Caption: proto.String("Q3")}}, "Document: r.pdf: Q3"},
		{&waE2E.Message{LocationMessage: &waE2E.LocationMessage{Name: proto.String("Berlin")}}, "Location: Berlin"},
		{&waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Text: proto.String("👍")}}, "👍"},
		{&waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), EditedMessage: conversation("new")}}, "new"},
		{&waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum()}}, "Message deleted"},
		{&waE2E.Message{}, ""},
	}
	for _, tc := range cases {
		if got := TextOnly(tc.msg); got != tc.want {
			t.Errorf("TextOnly(%v) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
