package stanza

import (
	"bytes"
	"encoding/base64"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// normalize gives the Node that Unmarshal returns for what Marshal writes from n:
// binary becomes base64 text, empty content nil, empty attributes nil.
func normalize(n Node) Node {
	out := Node{Tag: n.Tag}
	if len(n.Attrs) > 0 {
		out.Attrs = make(Attrs, len(n.Attrs))
		for k, v := range n.Attrs {
			out.Attrs[k] = v
		}
	}
	switch c := n.Content.(type) {
	case string:
		if c != "" {
			out.Content = c
		}
	case []byte:
		if len(c) > 0 {
			out.Content = base64.StdEncoding.EncodeToString(c)
		}
	case []Node:
		if len(c) > 0 {
			children := make([]Node, len(c))
			for i, child := range c {
				children[i] = normalize(child)
			}
			out.Content = children
		}
	}
	return out
}

func nested(depth int) Node {
	n := Node{Tag: "leaf", Content: "x"}
	for i := 1; i < depth; i++ {
		n = Node{Tag: "n", Content: []Node{n}}
	}
	return n
}

func manyAttrs(count int) Attrs {
	a := make(Attrs, count)
	for i := 0; i < count; i++ {
		a["a"+strconv.Itoa(i)] = strconv.Itoa(i)
	}
	return a
}

func binary() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

var sampleMessage = Node{
	Tag:   "message",
	Attrs: Attrs{"id": "8F3A0C1D2E3F40516273849A5B6C7D8E", "to": "491701234567@s.whatsapp.net", "type": "text", "phash": "2:AbCdEf"},
	Content: []Node{{Tag: "participants", Content: []Node{
		{Tag: "to", Attrs: Attrs{"jid": "491701234567@s.whatsapp.net"}, Content: []Node{
			{Tag: "enc", Attrs: Attrs{"v": "2", "type": "pkmsg"}, Content: bytes.Repeat([]byte{0xA5, 0x00, 0x7F}, 50)},
		}},
		{Tag: "to", Attrs: Attrs{"jid": "491701234567:3@s.whatsapp.net"}, Content: []Node{
			{Tag: "enc", Attrs: Attrs{"v": "2", "type": "msg"}, Content: bytes.Repeat([]byte{0x5A, 0xFF, 0x80}, 50)},
		}},
	}}},
}

func TestRoundTrip(t *testing.T) {
	special := "<>&\"' \t\n\r\r\n ]]> \u0085\x7f é 👋 \u2028 \uFFFD"
	tests := []struct {
		name string
		node Node
	}{
		{"message with participants", sampleMessage},
		{"receipt", Node{Tag: "receipt", Attrs: Attrs{"to": "491701234567@s.whatsapp.net", "id": "ABC", "type": "read", "t": "1700000000"}}},
		{"attribute with every special character", Node{Tag: "a", Attrs: Attrs{"v": special, "w": "'", "x": `"`, "y": ""}}},
		{"text with every special character", Node{Tag: "body", Content: special}},
		{"binary with every byte value", Node{Tag: "value", Content: binary()}},
		{"one byte binary (padding)", Node{Tag: "value", Content: []byte{0xFF}}},
		{"empty nil", Node{Tag: "ping"}},
		{"empty string", Node{Tag: "ping", Content: ""}},
		{"empty children", Node{Tag: "ping", Content: []Node{}}},
		{"empty binary", Node{Tag: "ping", Content: []byte{}}},
		{"empty attrs map", Node{Tag: "ping", Attrs: Attrs{}}},
		{"stream error", Node{Tag: "stream:error", Attrs: Attrs{"code": "515"}}},
		{"stream error conflict", Node{Tag: "stream:error", Content: []Node{{Tag: "conflict", Attrs: Attrs{"type": "replaced"}}}}},
		{"unicode text", Node{Tag: "subject", Content: "Grüße aus Köln 🇩🇪 — 日本語"}},
		{"unicode names", Node{Tag: "tëst·1", Attrs: Attrs{"ñame": "v", "_x.y-z": "w"}}},
		{"whitespace-only text", Node{Tag: "t", Content: " \n\t "}},
		{"xmlns is an ordinary attribute", Node{Tag: "iq", Attrs: Attrs{"xmlns": "w:p", "type": "get", "to": "s.whatsapp.net"}, Content: []Node{{Tag: "ping"}}}},
		{"maximum depth", nested(MaxDepth)},
		{"maximum attributes", Node{Tag: "a", Attrs: manyAttrs(MaxAttrs)}},
		{"siblings and mixed shapes", Node{Tag: "list", Content: []Node{
			{Tag: "item", Attrs: Attrs{"id": "1"}},
			{Tag: "item", Content: "text"},
			{Tag: "item", Content: []byte{1, 2, 3}},
			{Tag: "item", Content: []Node{{Tag: "x"}, {Tag: "y"}}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, err := Marshal(tt.node)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := Unmarshal(frame)
			if err != nil {
				t.Fatalf("Unmarshal(%q): %v", frame, err)
			}
			if want := normalize(tt.node); !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip of %q:\n got %#v\nwant %#v", frame, got, want)
			}
			again, err := Marshal(got)
			if err != nil || !bytes.Equal(again, frame) {
				t.Fatalf("re-marshal differs: %q (%v), first %q", again, err, frame)
			}
		})
	}
}

func TestMarshalOutput(t *testing.T) {
	tests := []struct {
		name string
		node Node
		want string
	}{
		{"sorted attributes", Node{Tag: "message", Attrs: Attrs{"type": "text", "to": "a", "id": "1"}, Content: []Node{{Tag: "body", Content: "hi"}}},
			`<message id="1" to="a" type="text"><body>hi</body></message>`},
		{"empty", Node{Tag: "ping"}, `<ping/>`},
		{"binary", Node{Tag: "v", Content: []byte("hello")}, `<v>aGVsbG8=</v>`},
		{"attribute escapes", Node{Tag: "a", Attrs: Attrs{"v": "<>&\"'\t\n\r\x7f\u0085é"}},
			`<a v="&lt;&gt;&amp;&quot;&apos;&#9;&#10;&#13;&#x7F;&#x85;é"/>`},
		{"text escapes", Node{Tag: "a", Content: "<>&\"'\t\n\r]]>"}, "<a>&lt;&gt;&amp;&quot;&apos;\t\n&#13;]]&gt;</a>"},
		{"stream error", Node{Tag: "stream:error", Attrs: Attrs{"code": "413"}}, `<stream:error code="413"/>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.node)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestMarshalRefuses(t *testing.T) {
	cyclic := make([]Node, 1)
	cyclic[0] = Node{Tag: "loop", Content: cyclic}
	tests := []struct {
		name string
		node Node
		want error
	}{
		{"empty tag", Node{}, ErrMalformed},
		{"tag with space", Node{Tag: "a b"}, ErrMalformed},
		{"tag starting with digit", Node{Tag: "1a"}, ErrMalformed},
		{"prefixed tag", Node{Tag: "x:a"}, ErrMalformed},
		{"tag with markup", Node{Tag: "a><b"}, ErrMalformed},
		{"prefixed attribute", Node{Tag: "a", Attrs: Attrs{"xmlns:stream": "x"}}, ErrMalformed},
		{"empty attribute name", Node{Tag: "a", Attrs: Attrs{"": "x"}}, ErrMalformed},
		{"attribute name with quote", Node{Tag: "a", Attrs: Attrs{`b"`: "x"}}, ErrMalformed},
		{"bad child tag", Node{Tag: "a", Content: []Node{{Tag: "<"}}}, ErrMalformed},
		{"unsupported content type", Node{Tag: "a", Content: 42}, ErrMalformed},
		{"single child Node", Node{Tag: "a", Content: Node{Tag: "b"}}, ErrMalformed},
		{"NUL in text", Node{Tag: "a", Content: "x\x00y"}, ErrMalformed},
		{"control in attribute", Node{Tag: "a", Attrs: Attrs{"b": "\x1b"}}, ErrMalformed},
		{"invalid UTF-8 in text", Node{Tag: "a", Content: "\xff"}, ErrMalformed},
		{"invalid UTF-8 in attribute", Node{Tag: "a", Attrs: Attrs{"b": "\xc0\x80"}}, ErrMalformed},
		{"invalid UTF-8 in tag", Node{Tag: "a\xff"}, ErrMalformed},
		{"U+FFFE", Node{Tag: "a", Content: "\uFFFE"}, ErrMalformed},
		{"too deep", nested(MaxDepth + 1), ErrMalformed},
		{"cycle", Node{Tag: "a", Content: cyclic}, ErrMalformed},
		{"too many attributes", Node{Tag: "a", Attrs: manyAttrs(MaxAttrs + 1)}, ErrMalformed},
		{"too large binary", Node{Tag: "a", Content: make([]byte, MaxFrameSize)}, ErrTooLarge},
		{"too large after escaping", Node{Tag: "a", Content: strings.Repeat("&", MaxFrameSize/4)}, ErrTooLarge},
		{"too many children", Node{Tag: "a", Content: make([]Node, MaxFrameSize/2)}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, err := Marshal(tt.node)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Marshal = %.80q, %v; want %v", frame, err, tt.want)
			}
			other := ErrTooLarge
			if tt.want == ErrTooLarge {
				other = ErrMalformed
			}
			if errors.Is(err, other) {
				t.Fatalf("error %v matches both sentinels", err)
			}
		})
	}
}

// The example of PROTOCOL.md section 3.3, as printed there.
const prettyExample = `<message id="8F3A…" to="491701234567@s.whatsapp.net" type="text" phash="2:AbCdEf">
  <participants>
    <to jid="491701234567@s.whatsapp.net"><enc v="2" type="pkmsg">…</enc></to>
    <to jid="491701234567:3@s.whatsapp.net"><enc v="2" type="msg">…</enc></to>
  </participants>
</message>
`

func TestUnmarshalAccepts(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  Node
	}{
		{"pretty-printed example of section 3.3", prettyExample, Node{
			Tag:   "message",
			Attrs: Attrs{"id": "8F3A…", "to": "491701234567@s.whatsapp.net", "type": "text", "phash": "2:AbCdEf"},
			Content: []Node{{Tag: "participants", Content: []Node{
				{Tag: "to", Attrs: Attrs{"jid": "491701234567@s.whatsapp.net"}, Content: []Node{{Tag: "enc", Attrs: Attrs{"v": "2", "type": "pkmsg"}, Content: "…"}}},
				{Tag: "to", Attrs: Attrs{"jid": "491701234567:3@s.whatsapp.net"}, Content: []Node{{Tag: "enc", Attrs: Attrs{"v": "2", "type": "msg"}, Content: "…"}}},
			}}},
		}},
		{"empty element", `<ping/>`, Node{Tag: "ping"}},
		{"empty element with end tag", `<ping></ping>`, Node{Tag: "ping"}},
		{"whitespace in tags", "<a \t\r\n b = 'x' \n/>", Node{Tag: "a", Attrs: Attrs{"b": "x"}}},
		{"whitespace in end tag", "<a>t</a \n>", Node{Tag: "a", Content: "t"}},
		{"surrounding whitespace", " \r\n\t<a/>\n\n ", Node{Tag: "a"}},
		{"single and double quotes", `<a b='"' c="'"/>`, Node{Tag: "a", Attrs: Attrs{"b": `"`, "c": "'"}}},
		{"predefined entities", `<a b="&lt;&gt;&amp;&quot;&apos;">&lt;&gt;&amp;&quot;&apos;</a>`, Node{Tag: "a", Attrs: Attrs{"b": `<>&"'`}, Content: `<>&"'`}},
		{"character references", `<a b="&#65;&#x42;&#x1F600;&#0000067;">&#9;&#xa;&#xD;&#x10FFFF;</a>`, Node{Tag: "a", Attrs: Attrs{"b": "AB😀C"}, Content: "\t\n\r\U0010FFFF"}},
		{"attribute value normalisation", "<a b=\"x\ty\nz\r\nw\rv\"/>", Node{Tag: "a", Attrs: Attrs{"b": "x y z w v"}}},
		{"line ends in text", "<a>x\r\ny\rz\n</a>", Node{Tag: "a", Content: "x\ny\nz\n"}},
		{"whitespace-only leaf text", "<a>  </a>", Node{Tag: "a", Content: "  "}},
		{"whitespace around children dropped", "<a>\n <b/>\r\n\t<c>x</c> </a>", Node{Tag: "a", Content: []Node{{Tag: "b"}, {Tag: "c", Content: "x"}}}},
		{"greater-than and single bracket in text", "<a>a>b]c]]d</a>", Node{Tag: "a", Content: "a>b]c]]d"}},
		{"greater-than in attribute", `<a b=">"/>`, Node{Tag: "a", Attrs: Attrs{"b": ">"}}},
		{"unknown elements and attributes kept", `<iq future="1"><new-thing x.y="2"><deeper/></new-thing></iq>`,
			Node{Tag: "iq", Attrs: Attrs{"future": "1"}, Content: []Node{{Tag: "new-thing", Attrs: Attrs{"x.y": "2"}, Content: []Node{{Tag: "deeper"}}}}}},
		{"nested stream error", `<a><stream:error code="400"/></a>`, Node{Tag: "a", Content: []Node{{Tag: "stream:error", Attrs: Attrs{"code": "400"}}}}},
		{"C1 control and DEL literal", "<a b=\"\u0085\x7f\">\u0085\x7f</a>", Node{Tag: "a", Attrs: Attrs{"b": "\u0085\x7f"}, Content: "\u0085\x7f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Unmarshal([]byte(tt.frame))
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}
