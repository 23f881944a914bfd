package msgconv

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

func htmlContent(msgType event.MessageType, body, formatted string) *event.MessageEventContent {
	return &event.MessageEventContent{MsgType: msgType, Body: body, Format: event.FormatHTML, FormattedBody: formatted}
}

func textContent(body string) *event.MessageEventContent {
	return &event.MessageEventContent{MsgType: event.MsgText, Body: body}
}

func replyRelation() *event.RelatesTo {
	return (&event.RelatesTo{}).SetReplyTo("$target")
}

func TestToMeta(t *testing.T) {
	ctx := context.Background()
	type want struct {
		text     string
		mentions []string
		extended bool // extendedTextMessage rather than conversation
		err      error
	}
	withReply := func(c *event.MessageEventContent) *event.MessageEventContent {
		c.RelatesTo = replyRelation()
		return c
	}
	withMentions := func(c *event.MessageEventContent, users ...id.UserID) *event.MessageEventContent {
		c.Mentions = &event.Mentions{UserIDs: users}
		return c
	}
	cases := []struct {
		name    string
		content *event.MessageEventContent
		reply   *ReplyTarget
		want    want
	}{
		{"plain", textContent("hello from matrix"), nil, want{text: "hello from matrix"}},
		{"plain markers verbatim", textContent("*really* snake_case"), nil, want{text: "*really* snake_case"}},
		{"notice", &event.MessageEventContent{MsgType: event.MsgNotice, Body: "bot says hi"}, nil, want{text: "bot says hi"}},
		{"emote", &event.MessageEventContent{MsgType: event.MsgEmote, Body: "waves"}, nil, want{text: "/me waves"}},
		{"emote html", htmlContent(event.MsgEmote, "waves *hard*", "waves <b>hard</b>"), nil, want{text: "/me waves *hard*"}},
		{"bold strong", htmlContent(event.MsgText, "", "<b>a</b> and <strong>b</strong>"), nil, want{text: "*a* and *b*"}},
		{"italic", htmlContent(event.MsgText, "", "<i>a</i> <em>b</em>"), nil, want{text: "_a_ _b_"}},
		{"strike", htmlContent(event.MsgText, "", "<del>a</del> <s>b</s> <strike>c</strike>"), nil, want{text: "~a~ ~b~ ~c~"}},
		{"nested", htmlContent(event.MsgText, "", "<b>bold <i>both</i></b>"), nil, want{text: "*bold _both_*"}},
		{"same kind nested once", htmlContent(event.MsgText, "", "<b>a <strong>b</strong></b>"), nil, want{text: "*a b*"}},
		{"spaces kept outside markers", htmlContent(event.MsgText, "", "a<b> b </b>c"), nil, want{text: "a *b* c"}},
		{"bold across br per line", htmlContent(event.MsgText, "", "<b>one<br>two</b>"), nil, want{text: "*one*\n*two*"}},
		{"inline code", htmlContent(event.MsgText, "", "run <code>rm *_x_*</code> now"), nil, want{text: "run `rm *_x_*` now"}},
		{"code block keeps markers", htmlContent(event.MsgText, "", "<pre><code class=\"language-go\">a := *p\n_ = b\n</code></pre>"), nil, want{text: "```a := *p\n_ = b```"}},
		{"no markers inside code", htmlContent(event.MsgText, "", "<code><b>x</b></code>"), nil, want{text: "`x`"}},
		{"blockquote", htmlContent(event.MsgText, "", "<blockquote>quoted<br>two</blockquote>reply"), nil, want{text: "> quoted\n> two\nreply"}},
		{"paragraphs", htmlContent(event.MsgText, "", "<p>one</p>\n<p>two</p>\n"), nil, want{text: "one\n\ntwo"}},
		{"br", htmlContent(event.MsgText, "", "a<br/>\nb"), nil, want{text: "a\nb"}},
		{"unordered list", htmlContent(event.MsgText, "", "<ul>\n<li>a</li>\n<li><b>b</b></li>\n</ul>\n"), nil, want{text: "- a\n- *b*"}},
		{"ordered list start", htmlContent(event.MsgText, "", "<ol start=\"3\"><li>c</li><li>d</li></ol>"), nil, want{text: "3. c\n4. d"}},
		{"nested list", htmlContent(event.MsgText, "", "<ul><li>a<ul><li>b</li></ul></li></ul>"), nil, want{text: "- a\n  - b"}},
		{"link with text", htmlContent(event.MsgText, "", `see <a href="https://example.org/x_y">docs</a>`), nil, want{text: "see docs (https://example.org/x_y)"}},
		{"link equal text", htmlContent(event.MsgText, "", `<a href="https://example.org">https://example.org</a>`), nil, want{text: "https://example.org"}},
		{"link text without scheme", htmlContent(event.MsgText, "", `<a href="https://example.org">example.org</a>`), nil, want{text: "https://example.org"}},
		{"mention ghost", htmlContent(event.MsgText, "", `hi <a href="https://matrix.to/#/@meta_491701234567:example.org">Wanda</a>!`), nil,
			want{text: "hi @491701234567!", mentions: []string{"491701234567@s.whatsapp.net"}, extended: true}},
		{"mention bridge user and messenger ghost", htmlContent(event.MsgText, "", `<a href="https://matrix.to/#/%40alice%3Aexample.org">Alice</a> <a href="https://matrix.to/#/@meta_1000042:example.org">Max</a>`), nil,
			want{text: "@12-491709999999 @1000042", mentions: []string{"12-491709999999@interop", "1000042@msgr"}, extended: true}},
		{"mention unknown user", htmlContent(event.MsgText, "", `hi <a href="https://matrix.to/#/@stranger:example.org">Stranger</a>`), nil, want{text: "hi Stranger"}},
		{"m.mentions without pill", withMentions(textContent("hey you"), ghostWA, stranger), nil,
			want{text: "hey you", mentions: []string{"491701234567@s.whatsapp.net"}, extended: true}},
		{"m.mentions dedup with pill", withMentions(htmlContent(event.MsgText, "", `<a href="https://matrix.to/#/@meta_491701234567:example.org">W</a>`), ghostWA), nil,
			want{text: "@491701234567", mentions: []string{"491701234567@s.whatsapp.net"}, extended: true}},
		{"literal markers escaped", htmlContent(event.MsgText, "*not bold*", `*not bold* a_b`), nil, want{text: "\u2060*\u2060not bold\u2060*\u2060 a_b"}},
		{"html escapes decoded", htmlContent(event.MsgText, "", "a &lt;b&gt; &amp; c"), nil, want{text: "a <b> & c"}},
		{"unicode and emoji", htmlContent(event.MsgText, "", "<b>Grüße 👋</b> 日本"), nil, want{text: "*Grüße 👋* 日本"}},
		{"header", htmlContent(event.MsgText, "", "<h1>Title</h1><p>body</p>"), nil, want{text: "*Title*\n\nbody"}},
		{"script dropped", htmlContent(event.MsgText, "", "ok<script>alert(1)</script>"), nil, want{text: "ok"}},
		{"reply html fallback stripped", withReply(htmlContent(event.MsgText, "> <@a:b> old\n\nnew", `<mx-reply><blockquote>old</blockquote></mx-reply>new`)),
			&ReplyTarget{StanzaID: "3EB0C0FFEE", Sender: jidWA, Text: "are you there?"}, want{text: "new", extended: true}},
		{"reply plain fallback stripped", withReply(textContent("> <@meta_491701234567:example.org> are you there?\n\nyes")),
			&ReplyTarget{StanzaID: "3EB0C0FFEE", Sender: jidWA, Text: "are you there?"}, want{text: "yes", extended: true}},
		{"reply without fallback", withReply(textContent("> a real quote\nok")),
			&ReplyTarget{StanzaID: "X", Sender: jidWA}, want{text: "> a real quote\nok", extended: true}},
		{"block inside bold", htmlContent(event.MsgText, "", "<b><blockquote>q</blockquote><ol><li>x</li></ol></b>"), nil, want{text: "> *q*\n1. *x*"}},
		{"too deep html falls back to body", htmlContent(event.MsgText, "deep", strings.Repeat("<div>", 600)+"x"), nil, want{text: "deep"}},
		{"html only reply fallback uses body", withReply(htmlContent(event.MsgText, "> <@a:b> old\n\nnew", "<mx-reply>old</mx-reply>")),
			&ReplyTarget{StanzaID: "X", Sender: jidWA}, want{text: "new", extended: true}},
		{"empty emote", &event.MessageEventContent{MsgType: event.MsgEmote, Body: " "}, nil, want{err: ErrInvalid}},
		{"literal list prefix escaped", htmlContent(event.MsgText, "", "a<br>- b<br>1. c<br>&gt; d"), nil, want{text: "a\n\u2060- b\n\u20601. c\n\u2060> d"}},
		{"code glued to letters uses fences", htmlContent(event.MsgText, "", "a<code>b</code>c"), nil, want{text: "a```b```c"}},
		{"literal star after bold", htmlContent(event.MsgText, "", "<b>x</b>* <b>y</b>"), nil, want{text: "*x** *y*"}},
		{"literal marker beside formatting", htmlContent(event.MsgText, "", "<i>a</i>* x"), nil, want{text: "_a_* x"}},
		{"blank line between lists", htmlContent(event.MsgText, "", "<ul><li>a</li></ul><br><ul><li>b</li></ul>"), nil, want{text: "- a\n\n- b"}},
		{"image unsupported", &event.MessageEventContent{MsgType: event.MsgImage, Body: "x.png"}, nil, want{err: ErrUnsupported}},
		{"empty", htmlContent(event.MsgText, "", "<p> </p>"), nil, want{err: ErrInvalid}},
		{"too long", textContent(strings.Repeat("a", MaxTextBytes+1)), nil, want{err: ErrTextTooLong}},
		{"at limit", textContent(strings.Repeat("a", MaxTextBytes)), nil, want{text: strings.Repeat("a", MaxTextBytes)}},
		{"bad reply target", textContent("x"), &ReplyTarget{StanzaID: ""}, want{err: ErrInvalid}},
	}
	conv := testConverter()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := conv.ToMeta(ctx, tc.content, tc.reply)
			if tc.want.err != nil {
				if !errors.Is(err, tc.want.err) {
					t.Fatalf("got error %v, want %v", err, tc.want.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			checkMetaText(t, msg, tc.want.text, tc.want.mentions, tc.want.extended)
			if tc.reply != nil {
				ci := msg.GetExtendedTextMessage().GetContextInfo()
				if ci.GetStanzaId() != tc.reply.StanzaID || ci.GetParticipant() != tc.reply.Sender.String() ||
					ci.GetQuotedMessage().GetConversation() != tc.reply.Text {
					t.Fatalf("reply context = %v", ci)
				}
			}
		})
	}
}

func checkMetaText(t *testing.T, msg *waE2E.Message, text string, mentions []string, extended bool) {
	t.Helper()
	if extended != (msg.ExtendedTextMessage != nil) || extended == (msg.Conversation != nil) {
		t.Fatalf("extended = %v, message %v", extended, msg)
	}
	got := msg.GetConversation()
	if extended {
		got = msg.GetExtendedTextMessage().GetText()
	}
	if got != text {
		t.Fatalf("text = %q, want %q", got, text)
	}
	if gotM := msg.GetExtendedTextMessage().GetContextInfo().GetMentionedJid(); !slices.Equal(gotM, mentions) {
		t.Fatalf("mentions = %q, want %q", gotM, mentions)
	}
}

func TestEditToMeta(t *testing.T) {
	conv := testConverter()
	target := MessageKey{RemoteJID: jidWA, FromMe: true, ID: "A1B2C3D4"}
	content := &event.MessageEventContent{
		MsgType: event.MsgText, Body: "* fixed *typo*",
		NewContent: htmlContent(event.MsgText, "fixed typo", "fixed <b>typo</b>"),
	}
	msg, err := conv.EditToMeta(context.Background(), content, target, time.UnixMilli(1764000000002))
	if err != nil {
		t.Fatal(err)
	}
	pm := msg.GetProtocolMessage()
	if pm.GetType() != waE2E.ProtocolMessage_MESSAGE_EDIT || pm.GetKey().GetId() != "A1B2C3D4" ||
		!pm.GetKey().GetFromMe() || pm.GetTimestampMs() != 1764000000002 {
		t.Fatalf("edit = %v", pm)
	}
	if got := pm.GetEditedMessage().GetConversation(); got != "fixed *typo*" {
		t.Fatalf("edited text = %q", got)
	}
	if _, err := conv.EditToMeta(context.Background(), content, MessageKey{RemoteJID: jidWA}, time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("edit without target id: err = %v", err)
	}
}
