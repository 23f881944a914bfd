package msgconv

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"
	"maunium.net/go/mautrix/event"
)

// TestRoundTripMatrix sends Matrix HTML to WhatsApp and back: the meaning must survive,
// up to the HTML each side prefers.
func TestRoundTripMatrix(t *testing.T) {
	cases := []struct{ in, markup, html string }{
		{"<strong>bold</strong> and <em>it</em>", "*bold* and _it_", "<strong>bold</strong> and <em>it</em>"},
		{"<b>a <i>b</i></b> <del>c</del>", "*a _b_* ~c~", "<strong>a <em>b</em></strong> <del>c</del>"},
		{"use <code>x*y_z</code>", "use `x*y_z`", "use <code>x*y_z</code>"},
		{"<pre><code>a\n*b* _c_\n</code></pre>", "```a\n*b* _c_```", "<pre><code>a\n*b* _c_</code></pre>"},
		{"<blockquote>q <b>x</b></blockquote><p>t</p>", "> q *x*\n\nt", "<blockquote>q <strong>x</strong></blockquote><br>t"},
		{"<ul><li>a</li><li><em>b</em></li></ul>", "- a\n- _b_", "<ul><li>a</li><li><em>b</em></li></ul>"},
		{`<ol start="2"><li>a</li><li>b</li></ol>`, "2. a\n3. b", `<ol start="2"><li>a</li><li>b</li></ol>`},
		{"*not bold* snake_case ~x~", "\u2060*\u2060not bold\u2060*\u2060 snake_case \u2060~\u2060x\u2060~\u2060", "*not bold* snake_case ~x~"},
		{"<b>*</b> <i>a_</i>", "*\u2060*\u2060* _a\u2060_\u2060_", "<strong>*</strong> <em>a_</em>"},
		{"a &lt;b&gt; &amp;", "a <b> &", ""},
		{`hi <a href="https://matrix.to/#/@meta_491701234567:example.org">W</a>`, "hi @491701234567", "hi " + pillWA},
	}
	conv := testConverter()
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			msg, err := conv.ToMeta(ctx, htmlContent(event.MsgText, "", tc.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			cm, err := conv.FromMeta(ctx, MetaInfo{Chat: jidWA, Sender: jidWA}, msg)
			if err != nil {
				t.Fatal(err)
			}
			c := cm.Parts[0].Content
			if c.FormattedBody != tc.html {
				t.Fatalf("html = %q\n want %q\n(markup %q)", c.FormattedBody, tc.html, TextOnly(msg))
			}
			if !strings.Contains(tc.in, "<") && c.Body != html.UnescapeString(tc.in) {
				t.Fatalf("body = %q, want the literal text back", c.Body)
			}
			if got := TextOnly(msg); got != tc.markup {
				t.Fatalf("markup = %q, want %q", got, tc.markup)
			}
		})
	}
}

// TestRoundTripMeta sends WhatsApp markup to Matrix and back: the markup must come back
// as it was.
func TestRoundTripMeta(t *testing.T) {
	cases := []string{
		"*a* _b_ ~c~ `d`",
		"*bold _both_*",
		"```x\n*y*```",
		"> q *x*\n> r\nt",
		"- a\n- _b_",
		"3. c\n4. d",
		"snake_case_name 2*3*4",
		"Grüße 👋 *日本*",
		"plain <b> & text",
		"/me waves",
	}
	conv := testConverter()
	ctx := context.Background()
	for _, in := range cases {
		t.Run(in, func(t *testing.T) {
			cm, err := conv.FromMeta(ctx, MetaInfo{Chat: jidWA, Sender: jidWA}, conversation(in))
			if err != nil {
				t.Fatal(err)
			}
			msg, err := conv.ToMeta(ctx, cm.Parts[0].Content, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := TextOnly(msg); got != in {
				t.Fatalf("round trip = %q, want %q (html %q)", got, in, cm.Parts[0].Content.FormattedBody)
			}
		})
	}
}

// allowedTags is every element markupToHTML may write; anything else in its output
// would be injected from the WhatsApp text.
var allowedTags = map[string]bool{
	"strong": true, "em": true, "del": true, "code": true, "pre": true, "blockquote": true,
	"ul": true, "ol": true, "li": true, "br": true, "a": true,
}

func checkOnlyAllowedTags(t *testing.T, formatted string) {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(formatted))
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return
		case html.StartTagToken, html.EndTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			if !allowedTags[string(name)] {
				t.Fatalf("tag %q in output %q", name, formatted)
			}
			for hasAttr {
				var k []byte
				k, _, hasAttr = z.TagAttr()
				if string(k) != "href" && string(k) != "start" {
					t.Fatalf("attribute %q in output %q", k, formatted)
				}
			}
		}
	}
}

func FuzzFromMeta(f *testing.F) {
	for _, s := range []string{"*a* _b_ ~c~ `d`", "```x\n*y*```", "> q\n- a\n1. b", "@491701234567 hi",
		"<script>x</script>", "\u2060*x*\u2060", "*_~`", "``````", "```a```b```c```", "_*_*_*", "99999999999. x"} {
		f.Add(s)
	}
	conv := testConverter()
	ctx := context.Background()
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	f.Fuzz(func(t *testing.T, text string) {
		msg := mentioning(text, jidWA.String(), jidAlice.String(), jidBob.String())
		cm, err := conv.FromMeta(ctx, info, msg)
		if err != nil {
			if len(text) > MaxTextBytes {
				return
			}
			t.Fatalf("error for %q: %v", text, err)
		}
		c := cm.Parts[0].Content
		checkOnlyAllowedTags(t, c.FormattedBody)
		if !utf8.ValidString(c.Body) || !utf8.ValidString(c.FormattedBody) {
			t.Fatalf("invalid UTF-8 out of %q", text)
		}
		// Back to WhatsApp must not fail or panic either.
		_, _ = conv.ToMeta(ctx, c, nil)
	})
}

func FuzzToMeta(f *testing.F) {
	for _, s := range []string{"<b>a <i>b</i></b>", "<pre><code>x\n```y```\n</code></pre>", "<ul><li>a<ol><li>b</li></ol></li></ul>",
		`<a href="https://matrix.to/#/@meta_491701234567:example.org">W</a>`, "<mx-reply>x</mx-reply>y", "<blockquote><p>a</p><p>b</p></blockquote>",
		"*lit* _x_", "<table><tr><td>a</td></tr></table>", "<code><pre>", strings.Repeat("<div>", 200) + "x"} {
		f.Add(s)
	}
	conv := testConverter()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, formatted string) {
		content := htmlContent(event.MsgText, "fallback", formatted)
		msg, err := conv.ToMeta(ctx, content, nil)
		if err != nil {
			return
		}
		text := TextOnly(msg)
		if len(text) > MaxTextBytes {
			t.Fatalf("text over the limit: %d bytes", len(text))
		}
		// And back to Matrix.
		if _, err := conv.FromMeta(ctx, MetaInfo{Chat: jidWA, Sender: jidWA}, msg); err != nil {
			t.Fatalf("back to Matrix: %v", err)
		}
	})
}

// normHTML drops what does not change meaning: whitespace, <br> versus a space, and a
// lone code block versus inline code.
func normHTML(s string) string {
	s = strings.NewReplacer("<pre><code>", "<code>", "</code></pre>", "</code>", "<br>", " ").Replace(s)
	return strings.Join(strings.Fields(s), "")
}

// FuzzRoundTripMeta checks that WhatsApp text rendered for Matrix, sent back to WhatsApp
// and rendered again means the same: escaping and markup generation lose nothing.
func FuzzRoundTripMeta(f *testing.F) {
	for _, s := range []string{"*a* _b_ ~c~ `d`", "```x\n*y*```", "> q\n- a\n1. b", "@491701234567 hi", "*_~`",
		"a *b _c_ d* e", "_0_~ ~0~", "* 0\n\n* 00", " * *0*", "0 _0_~~`0`", "a```b```c", "* 0\n \n* 00"} {
		f.Add(s)
	}
	conv := testConverter()
	ctx := context.Background()
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	f.Fuzz(func(t *testing.T, text string) {
		cm, err := conv.FromMeta(ctx, info, mentioning(text, jidWA.String()))
		if err != nil {
			return
		}
		first := cm.Parts[0].Content
		msg, err := conv.ToMeta(ctx, first, nil)
		if err != nil {
			return
		}
		cm, err = conv.FromMeta(ctx, info, msg)
		if err != nil {
			t.Fatalf("second pass failed: %v", err)
		}
		if second := cm.Parts[0].Content; normHTML(first.FormattedBody) != normHTML(second.FormattedBody) {
			t.Fatalf("in %q\nhtml   %q\nmarkup %q\nhtml   %q", text, first.FormattedBody, TextOnly(msg), second.FormattedBody)
		}
	})
}

// FuzzRoundTripMatrix checks the other way: markup made from Matrix HTML, rendered for
// Matrix and made into markup again, shows the same on WhatsApp (by our reading of it).
func FuzzRoundTripMatrix(f *testing.F) {
	for _, s := range []string{"<b>a <i>b</i></b> <del>c</del>", "<pre><code>x\n```y```\n</code></pre>", "<ul><li>a<ol><li>b</li></ol></li></ul>",
		`<a href="https://matrix.to/#/@meta_491701234567:example.org">W</a>`, "<blockquote><p>a</p><p>b</p></blockquote>",
		"*lit* _x_ a<code>b</code>c", "<b>x</b>* <i>y</i>_", "a<br>- b<br>1. c", "<code>00`</code>`"} {
		f.Add(s)
	}
	conv := testConverter()
	ctx := context.Background()
	info := MetaInfo{Chat: jidWA, Sender: jidWA}
	f.Fuzz(func(t *testing.T, formatted string) {
		first, err := conv.ToMeta(ctx, htmlContent(event.MsgText, "fallback", formatted), nil)
		if err != nil {
			return
		}
		cm1, err := conv.FromMeta(ctx, info, first)
		if err != nil {
			t.Fatalf("to Matrix: %v", err)
		}
		second, err := conv.ToMeta(ctx, cm1.Parts[0].Content, nil)
		if err != nil {
			t.Fatalf("back to WhatsApp: %v", err)
		}
		cm2, err := conv.FromMeta(ctx, info, second)
		if err != nil {
			t.Fatalf("to Matrix again: %v", err)
		}
		if a, b := normHTML(cm1.Parts[0].Content.FormattedBody), normHTML(cm2.Parts[0].Content.FormattedBody); a != b {
			t.Fatalf("in %q\nmarkup %q\nhtml   %q\nmarkup %q\nhtml   %q", formatted, TextOnly(first), a, TextOnly(second), b)
		}
	})
}
