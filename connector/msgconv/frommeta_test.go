package msgconv

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

func conversation(text string) *waE2E.Message {
	return &waE2E.Message{Conversation: proto.String(text)}
}

func extended(text string, ci *waE2E.ContextInfo) *waE2E.Message {
	return &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String(text), ContextInfo: ci}}
}

func mentioning(text string, jids ...string) *waE2E.Message {
	return extended(text, &waE2E.ContextInfo{MentionedJid: jids})
}

const (
	pillWA    = `<a href="https://matrix.to/#/@meta_491701234567:example.org">Wanda &lt;WA&gt;</a>`
	pillMsgr  = `<a href="https://matrix.to/#/@meta_1000042:example.org">Max</a>`
	pillAlice = `<a href="https://matrix.to/#/@alice:example.org">Alice</a>`
)

func TestFromMeta(t *testing.T) {
	type want struct {
		msgType  event.MessageType
		body     string
		html     string // "" means no formatted_body
		mentions []id.UserID
		err      error
	}
	cases := []struct {
		name string
		msg  *waE2E.Message
		want want
	}{
		{"plain", conversation("hello"), want{body: "hello"}},
		{"bold", conversation("a *b* c"), want{body: "a *b* c", html: "a <strong>b</strong> c"}},
		{"italic strike", conversation("_i_ ~s~"), want{body: "_i_ ~s~", html: "<em>i</em> <del>s</del>"}},
		{"inline code", conversation("run `ls -l` now"), want{body: "run `ls -l` now", html: "run <code>ls -l</code> now"}},
		{"nested", conversation("*bold _both_*"), want{body: "*bold _both_*", html: "<strong>bold <em>both</em></strong>"}},
		{"nested other way", conversation("_~*x*~_"), want{body: "_~*x*~_", html: "<em><del><strong>x</strong></del></em>"}},
		{"snake case literal", conversation("snake_case_name"), want{body: "snake_case_name"}},
		{"arithmetic literal", conversation("2*3*4 and a*b"), want{body: "2*3*4 and a*b"}},
		{"marker inside word end", conversation("*bold*ly"), want{body: "*bold*ly"}},
		{"space inside marker", conversation("* not bold *"), want{body: "* not bold *", html: "<ul><li>not bold *</li></ul>"}},
		{"unbalanced", conversation("*open only and _this"), want{body: "*open only and _this"}},
		{"empty pair", conversation("** __"), want{body: "** __"}},
		{"not across lines", conversation("*a\nb*"), want{body: "*a\nb*"}},
		{"punctuation boundary", conversation("(*yes*)!"), want{body: "(*yes*)!", html: "(<strong>yes</strong>)!"}},
		{"code block markers literal", conversation("```\n*a* _b_ <i>\n```"), want{body: "```\n*a* _b_ <i>\n```", html: "<pre><code>*a* _b_ &lt;i&gt;</code></pre>"}},
		{"code block alone on line", conversation("see\n```x = *y*```"), want{body: "see\n```x = *y*```", html: "see<br><pre><code>x = *y*</code></pre>"}},
		{"inline fence", conversation("run ```ls``` now"), want{body: "run ```ls``` now", html: "run <code>ls</code> now"}},
		{"unclosed fence", conversation("```abc *x*"), want{body: "```abc *x*", html: "```abc <strong>x</strong>"}},
		{"inline code keeps markers", conversation("`*x*`"), want{body: "`*x*`", html: "<code>*x*</code>"}},
		{"quote", conversation("> quoted *x*\n> two\nreply"), want{body: "> quoted *x*\n> two\nreply", html: "<blockquote>quoted <strong>x</strong><br>two</blockquote>reply"}},
		{"bullets", conversation("- a\n* b\nafter"), want{body: "- a\n* b\nafter", html: "<ul><li>a</li><li>b</li></ul>after"}},
		{"ordered", conversation("3. c\n4. _d_"), want{body: "3. c\n4. _d_", html: `<ol start="3"><li>c</li><li><em>d</em></li></ol>`}},
		{"html injection escaped", conversation(`<script>alert("x")</script> & <b>`), want{body: `<script>alert("x")</script> & <b>`}},
		{"html injection in bold", conversation(`*<img src=x onerror=alert(1)>*`), want{body: `*<img src=x onerror=alert(1)>*`, html: "<strong>&lt;img src=x onerror=alert(1)&gt;</strong>"}},
		{"unicode emoji", conversation("*Grüße 👋* 日本 _テスト_"), want{body: "*Grüße 👋* 日本 _テスト_", html: "<strong>Grüße 👋</strong> 日本 <em>テスト</em>"}},
		{"emoji boundary", conversation("👋*hi*👋"), want{body: "👋*hi*👋", html: "👋<strong>hi</strong>👋"}},
		{"word joiner escapes", conversation("\u2060*not bold*\u2060 a_b"), want{body: "*not bold* a_b", html: "*not bold* a_b"}},
		{"mention ghost", mentioning("hi @491701234567!", "491701234567@s.whatsapp.net"),
			want{body: "hi Wanda <WA>!", html: "hi " + pillWA + "!", mentions: []id.UserID{ghostWA}}},
		{"mention bridge user and messenger", mentioning("@12-491709999999 @1000042", "12-491709999999@interop", "1000042@msgr"),
			want{body: "Alice Max", html: pillAlice + " " + pillMsgr, mentions: []id.UserID{bridgeUser, ghostMsgr}}},
		{"mention unknown", mentioning("hi @491705555555", jidBob.String()), want{body: "hi @491705555555"}},
		{"mention not in mentionedJid", conversation("hi @491701234567"), want{body: "hi @491701234567"}},
		{"mention longer number not matched", mentioning("@4917012345678", "491701234567@s.whatsapp.net"), want{body: "@4917012345678"}},
		{"mention bad jid ignored", mentioning("@x", "not a jid"), want{body: "@x"}},
		{"mention inside code stays", mentioning("`@491701234567`", "491701234567@s.whatsapp.net"), want{body: "`Wanda <WA>`", html: "<code>@491701234567</code>"}},
		{"emote", conversation("/me waves _slowly_"), want{msgType: event.MsgEmote, body: "waves _slowly_", html: "waves <em>slowly</em>"}},
		{"too long", conversation(strings.Repeat("x", MaxTextBytes+1)), want{err: ErrTextTooLong}},
		{"image: a notice until media is bridged", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("Our office")}},
			want{msgType: event.MsgNotice, body: "Image: Our office (not shown: this bridge cannot bridge it yet)"}},
		{"voice note: a notice", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{Ptt: proto.Bool(true)}},
			want{msgType: event.MsgNotice, body: "Voice message (not shown: this bridge cannot bridge it yet)"}},
		{"unknown kind: a notice", &waE2E.Message{}, want{msgType: event.MsgNotice, body: "A message of a kind this bridge does not know (not shown: this bridge cannot bridge it yet)"}},
		{"escaped line prefix", conversation("\u2060- not a list\n\u2060> nor a quote"), want{body: "- not a list\n> nor a quote", html: "- not a list<br>&gt; nor a quote"}},
		{"doubled markers", conversation("**x** __y__"), want{body: "**x** __y__", html: "*<strong>x</strong>* _<em>y</em>_"}},
		{"blank line between lists kept", conversation("- a\n\n- b"), want{body: "- a\n\n- b", html: "<ul><li>a</li></ul><br><ul><li>b</li></ul>"}},
		{"invalid utf8 and nul", conversation("a\xff\x00b"), want{body: "a\ufffdb"}},
		{"nil", nil, want{err: ErrInvalid}},
	}
	conv := testConverter()
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cm, err := conv.FromMeta(context.Background(), info, tc.msg)
			if tc.want.err != nil {
				if !errors.Is(err, tc.want.err) {
					t.Fatalf("got error %v, want %v", err, tc.want.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(cm.Parts) != 1 || cm.Parts[0].Type != event.EventMessage {
				t.Fatalf("parts = %+v", cm.Parts)
			}
			c := cm.Parts[0].Content
			wantType := tc.want.msgType
			if wantType == "" {
				wantType = event.MsgText
			}
			if c.MsgType != wantType || c.Body != tc.want.body {
				t.Fatalf("type %q body %q, want %q %q", c.MsgType, c.Body, wantType, tc.want.body)
			}
			if tc.want.html == "" {
				if c.Format != "" || c.FormattedBody != "" {
					t.Fatalf("unexpected formatted body %q", c.FormattedBody)
				}
			} else if c.Format != event.FormatHTML || c.FormattedBody != tc.want.html {
				t.Fatalf("formatted body = %q\n                  want %q", c.FormattedBody, tc.want.html)
			}
			if c.Mentions == nil || !slices.Equal(c.Mentions.UserIDs, tc.want.mentions) {
				t.Fatalf("mentions = %+v, want %v", c.Mentions, tc.want.mentions)
			}
			if cm.ReplyTo != nil {
				t.Fatalf("unexpected reply %+v", cm.ReplyTo)
			}
		})
	}
}

func TestFromMetaReply(t *testing.T) {
	conv := testConverter()
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	msg := extended("yes @491701234567, *see* _this_", &waE2E.ContextInfo{
		StanzaId:      proto.String("3EB0C0FFEE"),
		Participant:   proto.String("12-491709999999@interop"),
		QuotedMessage: conversation("are you there?"),
		MentionedJid:  []string{"491701234567@s.whatsapp.net"},
	})
	cm, err := conv.FromMeta(context.Background(), info, msg)
	if err != nil {
		t.Fatal(err)
	}
	want := networkid.MessageID("491701234567@s.whatsapp.net:12-491709999999@interop:3EB0C0FFEE")
	if cm.ReplyTo == nil || cm.ReplyTo.MessageID != want || cm.ReplyTo.PartID != nil {
		t.Fatalf("reply = %+v, want %s", cm.ReplyTo, want)
	}
	if got := cm.Parts[0].Content.FormattedBody; got != "yes "+pillWA+", <strong>see</strong> <em>this</em>" {
		t.Fatalf("formatted = %q", got)
	}

	// A quote without participant cannot be placed; it is dropped, the text is kept.
	msg.ExtendedTextMessage.ContextInfo.Participant = nil
	cm, err = conv.FromMeta(context.Background(), info, msg)
	if err != nil || cm.ReplyTo != nil {
		t.Fatalf("reply without participant: %+v, %v", cm.ReplyTo, err)
	}
}

func TestConvertEdit(t *testing.T) {
	conv := testConverter()
	existing := []*database.Message{{ID: "491701234567@s.whatsapp.net:491701234567@s.whatsapp.net:A1"}}
	edit, err := conv.ConvertEdit(context.Background(), conversation("fixed *typo*"), existing)
	if err != nil {
		t.Fatal(err)
	}
	if len(edit.ModifiedParts) != 1 || edit.ModifiedParts[0].Part != existing[0] ||
		edit.ModifiedParts[0].Content.FormattedBody != "fixed <strong>typo</strong>" {
		t.Fatalf("edit = %+v", edit.ModifiedParts)
	}
	if _, err := conv.ConvertEdit(context.Background(), conversation("x"), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("edit without parts: %v", err)
	}
}
