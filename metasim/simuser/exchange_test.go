package simuser

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
)

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	must(t, err)
	return b
}

// isReceipt matches a receipt of a type from a device.
func isReceipt(typ string, from jid.JID) func(Item) bool {
	return func(it Item) bool { return it.Data.Receipt == typ && it.Sender == from }
}

var receiptKind = []Kind{KindReceipt}

// TestSection4_ContentExchange has a WhatsApp user with two devices and another with
// one exchange every content type of section 4 through a real gateway: text with
// markup and mentions, a reply, an edit, a revoke, a reaction set and removed,
// a location, and real encrypted media of every type compared byte for byte; with
// delivery receipts from every device, read and played receipts on demand and
// automatically, and typing (section 3.6).
func TestSection4_ContentExchange(t *testing.T) {
	e := newEnv(t)
	alice := e.user("491701111111", 2)
	bob := e.user("491702222222", 1)
	alice1 := alice.WithDevice(1)
	aliceDevices := []jid.JID{alice, alice1}

	// Text with markup and a mention travels as extendedTextMessage.
	marked := "*bold* _italic_ ~strike~ ```mono```\n> quoted, for @491702222222"
	first := e.send(alice, bob, Content{Kind: ContentText, Text: marked, Mentions: []jid.JID{bob}})
	if first.Message.GetExtendedTextMessage().GetContextInfo().GetMentionedJid()[0] != bob.String() {
		t.Fatalf("sent message lacks the mention: %v", first.Message)
	}
	it := e.waitMsg(bob, first.ID)
	if it.Kind != KindText || it.Data.Text != marked || !it.Data.Extended || !slices.Equal(it.Data.Mentions, []string{bob.String()}) ||
		it.Data.EncType != signal.TypePreKeyMessage || it.Sender != alice || it.Chat != alice {
		t.Fatalf("bob got %+v", it)
	}
	// Bob's device acknowledged it; both of Alice's devices hear about it.
	for _, dev := range aliceDevices {
		e.wait(alice, Filter{Device: dev, ID: first.ID, Kinds: receiptKind}, "delivery receipt", isReceipt("delivered", bob))
	}

	plain := e.send(alice, bob, Content{Kind: ContentText, Text: "plain"})
	if it := e.waitMsg(bob, plain.ID); it.Data.Text != "plain" || it.Data.Extended {
		t.Fatalf("plain text arrived as %+v", it)
	}

	// A reply reaches both of Alice's devices, and each sends its own delivery receipt.
	reply := e.send(bob, alice, Content{Kind: ContentText, Text: "a reply", ReplyTo: &Ref{ID: first.ID, Sender: alice, Text: marked}})
	for _, dev := range aliceDevices {
		it := e.waitMsg(dev, reply.ID)
		if q := it.Data.ReplyTo; q == nil || q.ID != first.ID || q.Participant != alice.String() || q.Text != marked {
			t.Fatalf("%s got the reply as %+v", dev, it.Data)
		}
		e.wait(bob, Filter{ID: reply.ID, Kinds: receiptKind}, "delivery receipt from "+dev.String(), isReceipt("delivered", dev))
	}
	if r, err := e.mgr.Receipts(ctxLong(t), bob, reply.ID); err != nil || len(r) != 1 || len(r["delivered"]) != 2 {
		t.Fatalf("Receipts of the reply: %v %v", r, err)
	}

	edit := e.send(alice, bob, Content{Kind: ContentEdit, Text: "edited *text*", Target: &Ref{ID: first.ID}})
	if it := e.waitMsg(bob, edit.ID); it.Kind != KindEdit || it.Data.Text != "edited *text*" ||
		it.Data.Target == nil || it.Data.Target.ID != first.ID || !it.Data.Target.FromMe || it.Data.Target.RemoteJID != bob.String() {
		t.Fatalf("edit arrived as %+v %+v", it, it.Data.Target)
	}

	react := e.send(bob, alice, Content{Kind: ContentReaction, Text: "👍", Target: &Ref{ID: first.ID, Sender: alice}})
	if it := e.waitMsg(alice, react.ID); it.Kind != KindReaction || it.Data.Text != "👍" || it.Data.Removed ||
		it.Data.Target.ID != first.ID || it.Data.Target.FromMe {
		t.Fatalf("reaction arrived as %+v %+v", it, it.Data.Target)
	}
	unreact := e.send(bob, alice, Content{Kind: ContentReaction, Text: "", Target: &Ref{ID: first.ID, Sender: alice}})
	if it := e.waitMsg(alice1, unreact.ID); it.Kind != KindReaction || !it.Data.Removed {
		t.Fatalf("reaction removal arrived as %+v", it)
	}

	loc := e.send(alice, bob, Content{Kind: ContentLocation, Location: &Location{Latitude: 52.5219, Longitude: 13.4132,
		Name: "Alexanderplatz", Address: "Berlin"}})
	if it := e.waitMsg(bob, loc.ID); it.Kind != KindLocation || it.Data.Location == nil ||
		*it.Data.Location != (Location{Latitude: 52.5219, Longitude: 13.4132, Name: "Alexanderplatz", Address: "Berlin"}) {
		t.Fatalf("location arrived as %+v", it)
	}
	revoke := e.send(alice, bob, Content{Kind: ContentRevoke, Target: &Ref{ID: loc.ID}})
	if it := e.waitMsg(bob, revoke.ID); it.Kind != KindRevoke || it.Data.Target.ID != loc.ID || !it.Data.Target.FromMe {
		t.Fatalf("revoke arrived as %+v", it)
	}
	if _, err := e.mgr.Send(ctxLong(t), alice, bob, Content{Kind: ContentRevoke, Target: &Ref{ID: reply.ID, Sender: bob}}); err == nil {
		t.Fatal("revoking someone else's message was sent")
	}

	// Typing, recording and pausing reach the peer live.
	for _, st := range []interop.ChatStateKind{interop.ChatComposing, interop.ChatRecording, interop.ChatPaused} {
		must(t, e.mgr.SendChatState(ctxLong(t), alice, bob, st))
		e.wait(bob, Filter{Kinds: []Kind{KindChatState}}, "chat state "+string(st), func(it Item) bool {
			return it.Data.ChatState == string(st) && it.Sender == alice && it.Chat == alice
		})
	}

	// Read on demand: both of Alice's devices see it.
	must(t, e.mgr.SendReceipt(ctxLong(t), bob, alice, jid.JID{}, interop.ReceiptRead, first.ID, plain.ID))
	for _, id := range []string{first.ID, plain.ID} {
		for _, dev := range aliceDevices {
			e.wait(alice, Filter{Device: dev, ID: id, Kinds: receiptKind}, "read receipt", isReceipt("read", bob))
		}
	}
	// Automatic reads, from Bob's phone.
	must(t, e.mgr.SetAutoRead(ctxLong(t), bob, true))
	auto := e.send(alice, bob, Content{Kind: ContentText, Text: "read me"})
	e.wait(alice, Filter{ID: auto.ID, Kinds: receiptKind}, "automatic read receipt", isReceipt("read", bob))
	must(t, e.mgr.SetAutoRead(ctxLong(t), bob, false))

	testMediaExchange(t, e, alice, bob)
}

// testMediaExchange sends each media type with real encryption from alice to bob
// and compares what bob fetched and verified byte for byte.
func testMediaExchange(t *testing.T, e *env, alice, bob jid.JID) {
	doc := []byte("%PDF-1.4 not really a pdf, but bytes all the same\n")
	cases := []struct {
		name    string
		content Content
		typ     string
		check   func(t *testing.T, mi *MediaInfo)
	}{
		{"image generated", Content{Kind: ContentImage, Text: "a *caption*", Media: &MediaSpec{Width: 40, Height: 30}}, "image",
			func(t *testing.T, mi *MediaInfo) {
				if mi.Width != 40 || mi.Height != 30 || mi.Mimetype != "image/png" {
					t.Fatalf("image metadata %+v", mi)
				}
			}},
		{"video", Content{Kind: ContentVideo, Text: "clip", Media: &MediaSpec{Data: randomBytes(t, 70_000), Seconds: 3,
			Width: 320, Height: 240}}, "video",
			func(t *testing.T, mi *MediaInfo) {
				if mi.Seconds != 3 || mi.Width != 320 || mi.Mimetype != "video/mp4" {
					t.Fatalf("video metadata %+v", mi)
				}
			}},
		{"audio", Content{Kind: ContentAudio, Media: &MediaSpec{Data: randomBytes(t, 5000), Seconds: 7, Mimetype: "audio/mpeg"}}, "audio",
			func(t *testing.T, mi *MediaInfo) {
				if mi.Seconds != 7 || mi.Mimetype != "audio/mpeg" {
					t.Fatalf("audio metadata %+v", mi)
				}
			}},
		{"voice note generated", Content{Kind: ContentVoice, Media: &MediaSpec{Size: 3000, Seconds: 2}}, "ptt",
			func(t *testing.T, mi *MediaInfo) {
				if mi.Seconds != 2 || mi.Size != 3000 || mi.Mimetype != "audio/ogg; codecs=opus" {
					t.Fatalf("voice note metadata %+v", mi)
				}
			}},
		{"document", Content{Kind: ContentDocument, Text: "the report", Media: &MediaSpec{Data: doc, Mimetype: "application/pdf",
			FileName: "report.pdf", Title: "Report", PageCount: 3}}, "document",
			func(t *testing.T, mi *MediaInfo) {
				if mi.FileName != "report.pdf" || mi.Title != "Report" || mi.PageCount != 3 || mi.Mimetype != "application/pdf" {
					t.Fatalf("document metadata %+v", mi)
				}
			}},
		{"empty document", Content{Kind: ContentDocument, Media: &MediaSpec{Data: []byte{}}}, "document", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sent := e.send(alice, bob, c.content)
			if sent.Media == nil || sent.Media.DirectPath == "" || sent.Media.URL != e.host.URL(sent.Media.DirectPath) {
				t.Fatalf("sent media %+v", sent.Media)
			}
			it := e.waitMsg(bob, sent.ID)
			mi := it.Data.Media
			if it.Kind != KindMedia || mi == nil || mi.Status != MediaOK || mi.Type != c.typ {
				t.Fatalf("bob got %+v %+v", it, mi)
			}
			got := readFile(t, mi.Path)
			sum := sha256.Sum256(got)
			if mi.SHA256 != sent.Media.SHA256 || hex.EncodeToString(sum[:]) != mi.SHA256 || mi.Size != int64(len(got)) ||
				uint64(mi.Size) != mi.FileLength || mi.Size != sent.Media.Size || mi.DirectPath != sent.Media.DirectPath {
				t.Fatalf("fetched %d bytes (%s), sent %+v", len(got), mi.SHA256, sent.Media)
			}
			if data := c.content.Media.Data; data != nil && !bytes.Equal(got, data) {
				t.Fatal("the fetched plaintext differs from what was sent")
			}
			if it.Data.Text != c.content.Text {
				t.Fatalf("caption %q, want %q", it.Data.Text, c.content.Text)
			}
			if c.check != nil {
				c.check(t, mi)
			}
		})
	}
	// A played receipt for a voice note.
	voice := e.send(alice, bob, Content{Kind: ContentVoice, Media: &MediaSpec{Size: 100}})
	e.waitMsg(bob, voice.ID)
	must(t, e.mgr.SendReceipt(ctxLong(t), bob, alice, jid.JID{}, interop.ReceiptPlayed, voice.ID))
	e.wait(alice, Filter{ID: voice.ID, Kinds: receiptKind}, "played receipt", isReceipt("played", bob))
}
