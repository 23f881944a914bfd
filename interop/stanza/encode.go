package stanza

import (
	"encoding/base64"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Marshal encodes n as one frame that Unmarshal decodes back to n: attributes sorted by
// name so the output is stable, text and attribute values escaped, []byte content as
// standard base64, and no whitespace between elements. Empty content (nil, "", empty
// []byte or []Node) is written as <tag/>.
//
// It refuses (ErrMalformed) what Unmarshal would refuse: names that are not XML names or
// carry a prefix (except the tag stream:error), strings that are not valid UTF-8 or hold
// characters XML 1.0 cannot carry (control characters other than tab, LF, CR), content
// of any other type, nesting deeper than MaxDepth and more than MaxAttrs attributes. A
// result over MaxFrameSize is refused with ErrTooLarge.
func Marshal(n Node) ([]byte, error) {
	size, err := minSize(n, 1, 0)
	if err != nil {
		return nil, err
	}
	if size > MaxFrameSize {
		return nil, fmt.Errorf("%w: at least %d bytes", ErrTooLarge, size)
	}
	e := encoder{buf: make([]byte, 0, size+size/16+16)}
	if err := e.node(n); err != nil {
		return nil, err
	}
	if len(e.buf) > MaxFrameSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(e.buf))
	}
	return e.buf, nil
}

// minSize is the length of n's encoding before escaping, a lower bound of the real one,
// so that oversized trees are refused before any work and the buffer is allocated once.
// It stops counting past MaxFrameSize and below MaxDepth, which also ends cycles (a
// []Node may contain itself).
func minSize(n Node, depth, acc int) (int, error) {
	if depth > MaxDepth {
		return 0, marshalErr(fmt.Sprintf("elements nested deeper than %d", MaxDepth))
	}
	acc += 1 + len(n.Tag) + 2 // <tag/>
	for k, v := range n.Attrs {
		acc += len(k) + len(v) + 4 // ␠k="v"
	}
	switch c := n.Content.(type) {
	case nil:
	case string:
		if c != "" {
			acc += len(c) + len(n.Tag) + 2 // >text</tag> less the '/' counted above
		}
	case []byte:
		if len(c) > 0 {
			acc += base64.StdEncoding.EncodedLen(len(c)) + len(n.Tag) + 2
		}
	case []Node:
		if len(c) > 0 {
			acc += len(n.Tag) + 2
		}
		for _, child := range c {
			if acc > MaxFrameSize {
				return acc, nil
			}
			var err error
			if acc, err = minSize(child, depth+1, acc); err != nil {
				return 0, err
			}
		}
	default:
		return 0, marshalErr(fmt.Sprintf("content of <%s> has unsupported type %T", n.Tag, n.Content))
	}
	return acc, nil
}

type encoder struct {
	buf []byte
}

func (e *encoder) node(n Node) error {
	if !validName(n.Tag, true) {
		return marshalErr("invalid tag name")
	}
	if len(n.Attrs) > MaxAttrs {
		return marshalErr(fmt.Sprintf("<%s> has more than %d attributes", n.Tag, MaxAttrs))
	}
	e.buf = append(e.buf, '<')
	e.buf = append(e.buf, n.Tag...)
	if len(n.Attrs) > 0 {
		// On the stack for the usual handful of attributes.
		var keyBuf [12]string
		keys := keyBuf[:0]
		for k := range n.Attrs {
			if !validName(k, false) {
				return marshalErr(fmt.Sprintf("<%s> has an invalid attribute name", n.Tag))
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			e.buf = append(e.buf, ' ')
			e.buf = append(e.buf, k...)
			e.buf = append(e.buf, '=', '"')
			if err := e.escape(n.Attrs[k], true); err != nil {
				return fmt.Errorf("in attribute %s of <%s>: %w", k, n.Tag, err)
			}
			e.buf = append(e.buf, '"')
		}
	}
	switch c := n.Content.(type) {
	case string:
		if c == "" {
			break
		}
		e.buf = append(e.buf, '>')
		if err := e.escape(c, false); err != nil {
			return fmt.Errorf("in text of <%s>: %w", n.Tag, err)
		}
		e.end(n.Tag)
		return nil
	case []byte:
		if len(c) == 0 {
			break
		}
		e.buf = append(e.buf, '>')
		e.buf = base64.StdEncoding.AppendEncode(e.buf, c)
		e.end(n.Tag)
		return nil
	case []Node:
		if len(c) == 0 {
			break
		}
		e.buf = append(e.buf, '>')
		for _, child := range c {
			if err := e.node(child); err != nil {
				return err
			}
		}
		e.end(n.Tag)
		return nil
	}
	// nil and empty content; minSize has refused other types.
	e.buf = append(e.buf, '/', '>')
	return nil
}

func (e *encoder) end(tag string) {
	e.buf = append(e.buf, '<', '/')
	e.buf = append(e.buf, tag...)
	e.buf = append(e.buf, '>')
}

// Byte classes for escape: printable ASCII other than the five markup characters, and
// in text also tab and LF.
var (
	escTextPlain [256]bool
	escAttrPlain [256]bool
)

func init() {
	for c := 0x20; c < 0x7F; c++ {
		switch c {
		case '<', '>', '&', '"', '\'':
		default:
			escTextPlain[c] = true
			escAttrPlain[c] = true
		}
	}
	escTextPlain['\t'] = true
	escTextPlain['\n'] = true
}

// escape appends s as text or as a double-quoted attribute value. Besides the five
// markup characters it writes as references what a parser would otherwise change (CR
// in text; tab, LF and CR in attributes, which XML normalises to spaces) and DEL and the
// C1 controls, which XML 1.1 and some tools treat as line ends or drop.
func (e *encoder) escape(s string, attr bool) error {
	plain := &escTextPlain
	if attr {
		plain = &escAttrPlain
	}
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		var ref string
		size := 1
		switch c {
		case '<':
			ref = "&lt;"
		case '>':
			ref = "&gt;"
		case '&':
			ref = "&amp;"
		case '"':
			ref = "&quot;"
		case '\'':
			ref = "&apos;"
		case '\t':
			ref = "&#9;"
		case '\n':
			ref = "&#10;"
		case '\r':
			ref = "&#13;"
		case 0x7F:
		default:
			if c < utf8.RuneSelf {
				return marshalErr("control character XML 1.0 cannot carry")
			}
			var r rune
			r, size = utf8.DecodeRuneInString(s[i:])
			if size == 1 {
				return marshalErr("invalid UTF-8")
			}
			if !isXMLChar(r) {
				return marshalErr("character XML 1.0 cannot carry")
			}
			if r > 0x9F {
				i += size
				continue
			}
		}
		e.buf = append(e.buf, s[last:i]...)
		if ref != "" {
			e.buf = append(e.buf, ref...)
		} else {
			// DEL or a C1 control: always two hex digits.
			r, _ := utf8.DecodeRuneInString(s[i:])
			const digits = "0123456789ABCDEF"
			e.buf = append(e.buf, '&', '#', 'x', digits[r>>4&0xF], digits[r&0xF], ';')
		}
		i += size
		last = i
	}
	e.buf = append(e.buf, s[last:]...)
	return nil
}
