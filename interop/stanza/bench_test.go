package stanza

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

// benchStanzas are a typical 1:1 message (two devices, ~200 bytes of base64 each) and a
// read receipt: what every message costs.
var benchStanzas = []struct {
	name string
	node Node
}{
	{"message", Node{
		Tag:   "message",
		Attrs: Attrs{"id": "8F3A0C1D2E3F40516273849A5B6C7D8E", "to": "491701234567@s.whatsapp.net", "type": "text", "phash": "2:AbCdEf"},
		Content: []Node{{Tag: "participants", Content: []Node{
			{Tag: "to", Attrs: Attrs{"jid": "491701234567@s.whatsapp.net"}, Content: []Node{
				{Tag: "enc", Attrs: Attrs{"v": "2", "type": "pkmsg"}, Content: bytes.Repeat([]byte{0x33, 0xC4, 0x9E}, 50)},
			}},
			{Tag: "to", Attrs: Attrs{"jid": "491701234567:3@s.whatsapp.net"}, Content: []Node{
				{Tag: "enc", Attrs: Attrs{"v": "2", "type": "msg"}, Content: bytes.Repeat([]byte{0x12, 0x7A, 0xE1}, 50)},
			}},
		}}},
	}},
	{"receipt", Node{Tag: "receipt", Attrs: Attrs{"to": "491701234567@s.whatsapp.net", "id": "8F3A0C1D2E3F40516273849A5B6C7D8E", "type": "read", "t": "1700000000"}}},
}

func BenchmarkEncodeDecode(b *testing.B) {
	for _, s := range benchStanzas {
		frame, err := Marshal(s.node)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := Marshal(s.node); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := Unmarshal(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/roundtrip", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				out, err := Marshal(s.node)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Unmarshal(out); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The baseline that justifies a hand-written decoder: encoding/xml only
		// tokenising the same frame, without building a tree or any of our checks.
		b.Run(s.name+"/encoding-xml-tokens", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				d := xml.NewDecoder(bytes.NewReader(frame))
				for {
					if _, err := d.RawToken(); err != nil {
						if !errors.Is(err, io.EOF) {
							b.Fatal(err)
						}
						break
					}
				}
			}
		})
	}
}

// BenchmarkHostile decodes 1 MiB frames of the shapes that cost the most per byte.
func BenchmarkHostile(b *testing.B) {
	fill := func(unit string) []byte {
		return []byte("<a>" + strings.Repeat(unit, (MaxFrameSize-7)/len(unit)) + "</a>")
	}
	for _, s := range []struct {
		name  string
		frame []byte
	}{
		{"empty-children", fill("<b/>")},
		{"attributed-children", fill(`<b c=""/>`)},
		{"references", fill("&#x1F600;&lt;")},
		{"base64-text", fill("QUJD")},
	} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(s.frame)))
			for b.Loop() {
				if _, err := Unmarshal(s.frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
