package stanza

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzUnmarshal: no input panics, every error matches exactly one sentinel, and what
// decodes re-encodes to a frame that decodes to the same Node (and re-encodes to the
// same bytes, since Marshal is deterministic).
func FuzzUnmarshal(f *testing.F) {
	for _, tt := range refusals {
		f.Add([]byte(tt.frame))
	}
	f.Add([]byte(prettyExample))
	for _, n := range []Node{
		sampleMessage,
		{Tag: "receipt", Attrs: Attrs{"to": "1@s.whatsapp.net", "id": "A", "type": "read"}},
		{Tag: "a", Attrs: Attrs{"v": "<>&\"'\t\n\r\u0085\x7f é"}, Content: "x\r\ny]]>&#9;"},
		{Tag: "stream:error", Content: []Node{{Tag: "conflict", Attrs: Attrs{"type": "replaced"}}}},
		nested(MaxDepth),
	} {
		frame, err := Marshal(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame)
	}
	f.Add([]byte("<a b='&#x1F600;&lt;'>\n <c/>\n <d>&amp;</d>\n</a>\n"))
	f.Add([]byte("<tëst·1 ñ=\"v\">\u2028</tëst·1>"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		n, err := Unmarshal(frame)
		if err != nil {
			if errors.Is(err, ErrMalformed) == errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v matches neither or both sentinels", err)
			}
			return
		}
		again, err := Marshal(n)
		if errors.Is(err, ErrTooLarge) {
			return // escaping may grow a frame near the limit past it
		}
		if err != nil {
			t.Fatalf("decoded %q to %#v, which does not marshal: %v", frame, n, err)
		}
		back, err := Unmarshal(again)
		if err != nil {
			t.Fatalf("re-marshalled %q to %q, which does not decode: %v", frame, again, err)
		}
		if !reflect.DeepEqual(back, n) {
			t.Fatalf("%q decodes to\n%#v\nbut its re-marshalled %q to\n%#v", frame, n, again, back)
		}
		third, err := Marshal(back)
		if err != nil || string(third) != string(again) {
			t.Fatalf("Marshal not stable: %q then %q (%v)", again, third, err)
		}
	})
}

// FuzzMarshalRoundTrip builds Nodes from arbitrary strings and bytes: whatever Marshal
// accepts must decode to the same Node, whatever the binary length (so every base64
// padding) and whatever the characters. What it refuses must be refused as malformed.
func FuzzMarshalRoundTrip(f *testing.F) {
	f.Add("message", "id", "ABC", "hello", []byte{1, 2, 3}, uint8(0))
	f.Add("stream:error", "code", "515", "", []byte{}, uint8(1))
	f.Add("a", "b", "<>&\"'\t\n\r", "]]>\r\n\u0085", []byte{0xFF}, uint8(2))
	f.Add("x:a", "y:b", "\x00", "\xff", []byte{0, 0}, uint8(3))
	f.Add("tëst", "ñ", "\uFFFE", "😀", []byte{0, 0, 0, 0}, uint8(4))
	f.Fuzz(func(t *testing.T, tag, key, value, text string, bin []byte, shape uint8) {
		child := Node{Tag: tag, Attrs: Attrs{key: value}}
		switch shape % 3 {
		case 0:
			child.Content = text
		case 1:
			child.Content = bin
		case 2:
			child.Content = []Node{{Tag: "t", Content: text}, {Tag: "b", Content: bin}}
		}
		n := Node{Tag: "root", Attrs: Attrs{"k": value}, Content: []Node{child, {Tag: "z", Content: bin}}}
		frame, err := Marshal(n)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
				t.Fatalf("Marshal error %v is not only ErrMalformed", err)
			}
			return
		}
		got, err := Unmarshal(frame)
		if err != nil {
			t.Fatalf("Marshal wrote %q, which does not decode: %v", frame, err)
		}
		if want := normalize(n); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip of %q:\n got %#v\nwant %#v", frame, got, want)
		}
		enc, _ := got.Child(child.Tag)
		if b, ok := child.Content.([]byte); ok && len(b) > 0 {
			dec, err := enc.Bytes()
			if err != nil || string(dec) != string(b) {
				t.Fatalf("binary %x came back as %x (%v)", b, dec, err)
			}
		}
	})
}
