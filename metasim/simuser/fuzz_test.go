package simuser

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// FuzzItemFromMessage decodes arbitrary decrypted content (what a hostile sender can
// put inside a valid Signal message) into an inbox item: it must never panic, and the
// item must encode to JSON and back.
func FuzzItemFromMessage(f *testing.F) {
	for _, m := range []*waE2E.Message{
		{Conversation: proto.String("hi")},
		{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("x"), ContextInfo: &waE2E.ContextInfo{
			StanzaId: proto.String("A"), QuotedMessage: &waE2E.Message{}, MentionedJid: []string{"1@s.whatsapp.net"}}}},
		{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum()}},
		{ReactionMessage: &waE2E.ReactionMessage{}},
		{ImageMessage: &waE2E.ImageMessage{}},
		{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String("a")}},
		{LocationMessage: &waE2E.LocationMessage{}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "image")
	}
	f.Fuzz(func(t *testing.T, raw []byte, mediaType string) {
		var msg waE2E.Message
		if proto.Unmarshal(raw, &msg) != nil {
			return
		}
		sender := jid.New("491701111111", jid.ServerGateway)
		it := itemFromMessage(&interop.DecryptedMessage{Message: &msg,
			Info: interop.MessageInfo{ID: "X", Chat: sender, Sender: sender, MediaType: mediaType}})
		if it.Kind == "" {
			t.Fatal("item without a kind")
		}
		if it.Kind == KindMedia {
			if _, err := expectedOf(&msg, mediaType); err != nil && it.Data.Media == nil {
				t.Fatal("media item without metadata")
			}
		}
		b, err := json.Marshal(it)
		if err != nil {
			t.Fatalf("item does not encode: %v", err)
		}
		var back Item
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("item does not decode: %v", err)
		}
	})
}
