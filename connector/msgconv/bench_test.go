package msgconv

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
)

func BenchmarkFromMeta(b *testing.B) {
	conv := testConverter()
	msg := mentioning("hey @491701234567, *see* _this_ and ~that~:\n> quoted `code`\n- one\n- two\n```\nblock *x*\n```", jidWA.String())
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conv.FromMeta(context.Background(), info, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkToMeta(b *testing.B) {
	conv := testConverter()
	content := htmlContent(event.MsgText, "", `<p>hey <a href="https://matrix.to/#/@meta_491701234567:example.org">W</a>, <strong>see</strong> <em>this</em></p>`+
		"<blockquote>quoted <code>code</code></blockquote><ul><li>one</li><li>two</li></ul><pre><code>block *x*\n</code></pre>")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conv.ToMeta(context.Background(), content, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// The worst inputs we could think of, at WhatsApp's size limit: every position a marker
// that could open, no closers, many fences on one line; and deep HTML nesting.
func BenchmarkFromMetaAdversarial(b *testing.B) {
	conv := testConverter()
	text := strings.Repeat("*a _b ~c `d ", MaxTextBytes/12)[:MaxTextBytes-8] + "```a```"
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := conv.FromMeta(context.Background(), info, conversation(text)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromMetaManyFences(b *testing.B) {
	conv := testConverter()
	text := strings.Repeat("```a``` ", MaxTextBytes/8)
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := conv.FromMeta(context.Background(), info, conversation(text)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkToMetaDeepHTML(b *testing.B) {
	conv := testConverter()
	formatted := strings.Repeat("<blockquote><b><i>", 150) + strings.Repeat("x *y* ", 1000)
	content := htmlContent(event.MsgText, "", formatted)
	b.SetBytes(int64(len(formatted)))
	for b.Loop() {
		if _, err := conv.ToMeta(context.Background(), content, nil); err != nil {
			b.Fatal(err)
		}
	}
}
