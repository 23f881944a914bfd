package stanza

import (
	"errors"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// refusals are frames Unmarshal must refuse, with a word the error must contain so a
// refusal for the wrong reason fails the test. The fuzz seed corpus reuses them.
var refusals = []struct {
	name   string
	frame  string
	reason string
}{
	{"empty", "", "no element"},
	{"whitespace only", " \n ", "no element"},
	{"text only", "hello", "text outside"},
	{"byte order mark", "\uFEFF<a/>", "byte order mark"},
	{"xml declaration", `<?xml version="1.0" encoding="UTF-8"?><a/>`, "XML declaration"},
	{"processing instruction", `<a><?pi data?></a>`, "processing instructions"},
	{"processing instruction after root", `<a/><?pi?>`, "after the element"},
	{"comment before root", `<!-- c --><a/>`, "comments"},
	{"comment inside", `<a><!-- c --></a>`, "comments"},
	{"comment after root", `<a/><!-- c -->`, "after the element"},
	{"cdata", `<a><![CDATA[x]]></a>`, "CDATA"},
	{"doctype", `<!DOCTYPE a><a/>`, "DOCTYPE"},
	{"entity declaration", `<!ENTITY x "y"><a/>`, "declarations"},
	{"billion laughs", `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>`, "DOCTYPE"},
	{"billion laughs reference only", `<lolz>&lol9;</lolz>`, "entity"},
	{"undeclared entity in text", `<a>&foo;</a>`, "entity"},
	{"undeclared entity in attribute", `<a b="&foo;"/>`, "entity"},
	{"entity with long name", `<a>&` + strings.Repeat("x", 100) + `;</a>`, "entity"},
	{"entity without semicolon", `<a>&amp</a>`, "entity"},
	{"bare ampersand", `<a>a & b</a>`, "entity"},
	{"ampersand at end", `<a b="&`, "truncated"},
	{"char ref to NUL", `<a>&#0;</a>`, "character reference"},
	{"char ref to control", `<a>&#x1b;</a>`, "character reference"},
	{"char ref to surrogate", `<a>&#xD800;</a>`, "character reference"},
	{"char ref to U+FFFE", `<a>&#xFFFE;</a>`, "character reference"},
	{"char ref beyond Unicode", `<a>&#x110000;</a>`, "character reference"},
	{"char ref overflowing", `<a>&#99999999999999999999999999;</a>`, "character reference"},
	{"char ref empty", `<a>&#;</a>`, "character reference"},
	{"char ref empty hex", `<a>&#x;</a>`, "character reference"},
	{"char ref uppercase X", `<a>&#X41;</a>`, "character reference"},
	{"char ref unterminated", `<a>&#65</a>`, "character reference"},
	{"mixed text then child", `<a>x<b/></a>`, "mixed content"},
	{"mixed child then text", `<a><b/>x</a>`, "mixed content"},
	{"mixed text between children", `<a><b/> x <c/></a>`, "mixed content"},
	{"mixed reference then child", `<a>&#32;<b/></a>`, "mixed content"},
	{"prefixed tag", `<x:a/>`, "namespace prefixes"},
	{"prefixed end tag", `<a></x:a>`, "does not match"},
	{"prefix-like stream tag", `<stream:errors/>`, "namespace prefixes"},
	{"prefixed attribute", `<a x:b="1"/>`, "namespace prefixes"},
	{"namespace declaration", `<stream:error xmlns:stream="http://etherx.jabber.org/streams"/>`, "namespace prefixes"},
	{"colon only tag", `<:/>`, "namespace prefixes"},
	{"duplicate attribute", `<a b="1" b="2"/>`, "duplicate attribute"},
	{"duplicate attribute same value", `<a b="1" c="0" b='1'/>`, "duplicate attribute"},
	{"invalid UTF-8 in text", "<a>\xff</a>", "invalid UTF-8"},
	{"invalid UTF-8 in attribute", "<a b=\"\xc3\"/>", "invalid UTF-8"},
	{"invalid UTF-8 in tag", "<a\xff/>", "invalid UTF-8"},
	{"overlong UTF-8", "<a>\xc0\x80</a>", "invalid UTF-8"},
	{"UTF-8 surrogate", "<a>\xed\xa0\x80</a>", "invalid UTF-8"},
	{"U+FFFF in text", "<a>\uFFFF</a>", "not allowed in XML"},
	{"U+FFFE in attribute", "<a b=\"\uFFFE\"/>", "not allowed in XML"},
	{"NUL in text", "<a>\x00</a>", "control character"},
	{"control in attribute", "<a b=\"\x01\"/>", "control character"},
	{"NUL in tag", "<a\x00/>", "unexpected character"},
	{"trailing element", `<a/><b/>`, "after the element"},
	{"trailing text", `<a/>x`, "after the element"},
	{"end tag only", `</a>`, "end tag without start tag"},
	{"mismatched end tag", `<a></b>`, "does not match"},
	{"crossed end tags", `<a><b></a></b>`, "does not match"},
	{"end tag prefix of name", `<ab></a>`, "does not match"},
	{"end tag longer than name", `<a></ab>`, "does not match"},
	{"end tag with attribute", `<a></a b="1">`, "expected '>'"},
	{"attributes without space", `<a b="1"c="2"/>`, "unexpected character"},
	{"unquoted attribute", `<a b=1/>`, "must be quoted"},
	{"attribute without value", `<a b/>`, "expected '='"},
	{"attribute without name", `<a ="1"/>`, "expected a name"},
	{"less-than in attribute", `<a b="<"/>`, "'<' in attribute"},
	{"cdata end in text", `<a>x]]>y</a>`, "']]>'"},
	{"tag starting with digit", `<1a/>`, "expected a name"},
	{"tag starting with hyphen", `<-a/>`, "expected a name"},
	{"space before tag name", `< a/>`, "expected a name"},
	{"slash without close", `<a/ >`, "expected '>'"},
	{"two roots with space", "<a/> <b/>", "after the element"},
}

func TestUnmarshalRefuses(t *testing.T) {
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Unmarshal([]byte(tt.frame))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal = %#v, %v; want ErrMalformed", n, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q does not say %q", err, tt.reason)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(tt.frame) {
				t.Fatalf("error %v has no offset inside the frame", err)
			}
		})
	}
}

func TestUnmarshalLimits(t *testing.T) {
	deep := func(depth int) string {
		return strings.Repeat("<a>", depth) + strings.Repeat("</a>", depth)
	}
	attrs := func(count int) string {
		var b strings.Builder
		b.WriteString("<a")
		for i := 0; i < count; i++ {
			b.WriteString(" a" + strconv.Itoa(i) + `=""`)
		}
		b.WriteString("/>")
		return b.String()
	}
	oversize := "<a>" + strings.Repeat("A", MaxFrameSize) + "</a>"
	tests := []struct {
		name  string
		frame string
		want  error // nil: accepted
	}{
		{"depth at limit", deep(MaxDepth), nil},
		{"depth over limit", deep(MaxDepth + 1), ErrMalformed},
		{"very deep", deep(100000), ErrMalformed},
		{"very deep unclosed", strings.Repeat("<a>", 200000), ErrMalformed},
		{"attributes at limit", attrs(MaxAttrs), nil},
		{"attributes over limit", attrs(MaxAttrs + 1), ErrMalformed},
		{"huge attribute count", attrs(50000), ErrMalformed},
		{"frame at limit", "<a>" + strings.Repeat("A", MaxFrameSize-7) + "</a>", nil},
		{"frame over limit", oversize, ErrTooLarge},
		{"frame over limit even if invalid", "\xff" + oversize, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Unmarshal([]byte(tt.frame))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal error %v, want %v", err, tt.want)
			}
		})
	}
}

// Every proper prefix of a real stanza is a truncated frame and must be refused.
func TestUnmarshalTruncated(t *testing.T) {
	compact, err := Marshal(sampleMessage)
	if err != nil {
		t.Fatal(err)
	}
	escaped, err := Marshal(Node{Tag: "a", Attrs: Attrs{"b": "<&>\"'\t"}, Content: "x&y&#13;é"})
	if err != nil {
		t.Fatal(err)
	}
	for _, frame := range [][]byte{compact, escaped, []byte(strings.TrimSpace(prettyExample))} {
		if _, err := Unmarshal(frame); err != nil {
			t.Fatalf("whole frame refused: %v", err)
		}
		for i := 0; i < len(frame); i++ {
			if n, err := Unmarshal(frame[:i]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("prefix of %d bytes %q: got %#v, %v", i, frame[:i], n, err)
			}
		}
	}
}

// Decoding hostile shapes must cost memory in proportion to the frame. The bound is
// what the Node model itself costs at worst: a 9-byte <b c=""/> becomes a 40-byte Node
// (kept once and held twice on the way in the doubling scratch stack) and a Go map,
// whose smallest size is 336 bytes.
func TestUnmarshalMemoryBound(t *testing.T) {
	const maxRatio = 56
	repeat := func(open, unit, closing string) []byte {
		count := (MaxFrameSize - len(open) - len(closing)) / len(unit)
		return []byte(open + strings.Repeat(unit, count) + closing)
	}
	tests := []struct {
		name  string
		frame []byte
	}{
		{"empty children", repeat("<a>", "<b/>", "</a>")},
		{"children with one attribute", repeat("<a>", `<b c=""/>`, "</a>")},
		{"children with many attributes", repeat("<a>", `<b c="" d="" e="" f="" g="" h="" i="" j="" k=""/>`, "</a>")},
		{"nested ladders", repeat("<a>", strings.Repeat("<b>", MaxDepth-1)+strings.Repeat("</b>", MaxDepth-1), "</a>")},
		{"text with references", repeat("<a>", "&#x1F600;&lt;", "</a>")},
		{"attribute with references", repeat(`<a b="`, "&#9;&amp;", `"/>`)},
		{"whitespace between children", repeat("<a>", "<b/>\n   \n   ", "</a>")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Unmarshal(tt.frame); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			const runs = 3
			for i := 0; i < runs; i++ {
				if _, err := Unmarshal(tt.frame); err != nil {
					t.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			ratio := float64(after.TotalAlloc-before.TotalAlloc) / runs / float64(len(tt.frame))
			t.Logf("%.1f bytes allocated per frame byte", ratio)
			if ratio > maxRatio {
				t.Fatalf("allocated %.1f bytes per frame byte, more than %d", ratio, maxRatio)
			}
		})
	}
}

// Decodes share pooled scratch space: a refused frame that left children behind must
// not leak them into the next decode, also when decodes run concurrently.
func TestUnmarshalAfterRefusal(t *testing.T) {
	want := Node{Tag: "x", Content: []Node{{Tag: "y"}}}
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 200; i++ {
				if _, err := Unmarshal([]byte("<a><b/><c/><d><e/></d><f")); err == nil {
					done <- errors.New("truncated frame accepted")
					return
				}
				got, err := Unmarshal([]byte("<x><y/></x>"))
				if err != nil || !reflect.DeepEqual(got, want) {
					done <- errors.New("decode after a refusal went wrong")
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
