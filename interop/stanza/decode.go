package stanza

import (
	"fmt"
	"sync"
	"unicode/utf8"
)

// Unmarshal decodes one frame: exactly one XML 1.0 element (PROTOCOL.md section 3),
// optionally surrounded by whitespace. It refuses frames over MaxFrameSize with
// ErrTooLarge and everything else that is not a strict stanza with an error matching
// ErrMalformed (a *SyntaxError): XML or DOCTYPE declarations, processing instructions,
// comments, CDATA, entities other than the five predefined ones, namespace prefixes
// (except the tag stream:error), mixed content, duplicate attributes, invalid UTF-8 or
// characters XML 1.0 does not allow, nesting deeper than MaxDepth, more than MaxAttrs
// attributes on one element, truncated frames and trailing data.
//
// Whitespace-only text between child elements is dropped so that pretty-printed stanzas
// decode. A decoded Node holds nil Attrs when it has no attributes, and Content nil
// (empty), string (text) or []Node (children, never empty). Decoded strings do not share
// memory with frame.
//
// It is a single pass over the bytes without backtracking: time is linear in the frame
// and memory a bounded multiple of it, whatever the input.
func Unmarshal(frame []byte) (Node, error) {
	if len(frame) > MaxFrameSize {
		return Node{}, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(frame))
	}
	if !utf8.Valid(frame) {
		return Node{}, syntaxErr(firstInvalidUTF8(frame), "invalid UTF-8")
	}
	d := decoder{b: frame}
	if sp, ok := stackPool.Get().(*[]Node); ok {
		d.stack = *sp
		defer func() {
			// Keep only small stacks: one hostile frame must not pin megabytes. An
			// error leaves children of unfinished elements behind: drop them.
			if cap(d.stack) <= maxPooledStack {
				clear(d.stack)
				*sp = d.stack[:0]
				stackPool.Put(sp)
			}
		}()
	}
	d.skipSpace()
	if d.pos >= len(frame) {
		return Node{}, syntaxErr(d.pos, "no element")
	}
	if frame[d.pos] != '<' {
		if d.pos == 0 && len(frame) >= 3 && string(frame[:3]) == "\uFEFF" {
			return Node{}, syntaxErr(0, "byte order mark is not allowed")
		}
		return Node{}, syntaxErr(d.pos, "text outside the element")
	}
	n, err := d.element()
	if err != nil {
		return Node{}, err
	}
	d.skipSpace()
	if d.pos < len(frame) {
		return Node{}, syntaxErr(d.pos, "data after the element")
	}
	return n, nil
}

// stackPool saves each decode the allocation of its scratch stack. The stacks are
// cleared before they go back, so a pooled one holds no references into old trees.
var stackPool = sync.Pool{New: func() any {
	s := make([]Node, 0, 32)
	return &s
}}

const maxPooledStack = 1024

type decoder struct {
	b     []byte
	pos   int
	depth int
	// stack collects the children of every open element; an element copies its own
	// into an exactly sized slice when it closes, so no child slice is ever regrown.
	stack []Node
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}

func (d *decoder) truncated() error { return syntaxErr(d.pos, "truncated frame") }

// skipSpace skips XML whitespace and says whether there was any.
func (d *decoder) skipSpace() bool {
	start := d.pos
	for d.pos < len(d.b) && isSpace(d.b[d.pos]) {
		d.pos++
	}
	return d.pos > start
}

// markup explains why a '<' at d.pos does not start an element, or returns nil.
func (d *decoder) markup() error {
	rest := d.b[d.pos:]
	if len(rest) < 2 {
		return d.truncated()
	}
	switch rest[1] {
	case '!':
		switch {
		case hasPrefix(rest, "<!--"):
			return syntaxErr(d.pos, "comments are not allowed")
		case hasPrefix(rest, "<![CDATA["):
			return syntaxErr(d.pos, "CDATA sections are not allowed")
		case hasPrefix(rest, "<!DOCTYPE"):
			return syntaxErr(d.pos, "DOCTYPE is not allowed")
		}
		return syntaxErr(d.pos, "markup declarations are not allowed")
	case '?':
		if hasPrefix(rest, "<?xml") {
			return syntaxErr(d.pos, "XML declaration is not allowed")
		}
		return syntaxErr(d.pos, "processing instructions are not allowed")
	case '/':
		return syntaxErr(d.pos, "end tag without start tag")
	}
	return nil
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

// element decodes the element whose '<' is at d.pos.
func (d *decoder) element() (Node, error) {
	open := d.pos
	if err := d.markup(); err != nil {
		return Node{}, err
	}
	d.depth++
	if d.depth > MaxDepth {
		return Node{}, syntaxErr(open, fmt.Sprintf("elements nested deeper than %d", MaxDepth))
	}
	d.pos++
	start, end, colon, err := d.name()
	if err != nil {
		return Node{}, err
	}
	if colon && string(d.b[start:end]) != "stream:error" {
		return Node{}, syntaxErr(start, "namespace prefixes are not allowed")
	}
	n := Node{Tag: d.str(d.b[start:end])}
	empty, err := d.attrs(&n)
	if err != nil {
		return Node{}, err
	}
	if !empty {
		if err := d.content(&n, start, end); err != nil {
			return Node{}, err
		}
	}
	d.depth--
	return n, nil
}

// attrs reads the attributes up to '>' or '/>' and says whether it was '/>'.
func (d *decoder) attrs(n *Node) (empty bool, err error) {
	for {
		spaced := d.skipSpace()
		if d.pos >= len(d.b) {
			return false, d.truncated()
		}
		switch d.b[d.pos] {
		case '>':
			d.pos++
			return false, nil
		case '/':
			if d.pos+1 >= len(d.b) {
				return false, d.truncated()
			}
			if d.b[d.pos+1] != '>' {
				return false, syntaxErr(d.pos+1, "expected '>' after '/'")
			}
			d.pos += 2
			return true, nil
		}
		if !spaced {
			return false, syntaxErr(d.pos, "unexpected character in tag")
		}
		if len(n.Attrs) >= MaxAttrs {
			return false, syntaxErr(d.pos, fmt.Sprintf("more than %d attributes", MaxAttrs))
		}
		keyAt := d.pos
		key, value, err := d.attr()
		if err != nil {
			return false, err
		}
		if n.Attrs == nil {
			n.Attrs = make(Attrs, 4)
		} else if _, dup := n.Attrs[key]; dup {
			return false, syntaxErr(keyAt, "duplicate attribute")
		}
		n.Attrs[key] = value
	}
}

// attr reads one name="value" pair.
func (d *decoder) attr() (key, value string, err error) {
	start, end, colon, err := d.name()
	if err != nil {
		return "", "", err
	}
	if colon {
		return "", "", syntaxErr(start, "namespace prefixes are not allowed")
	}
	d.skipSpace()
	if d.pos >= len(d.b) {
		return "", "", d.truncated()
	}
	if d.b[d.pos] != '=' {
		return "", "", syntaxErr(d.pos, "expected '=' after attribute name")
	}
	d.pos++
	d.skipSpace()
	if d.pos >= len(d.b) {
		return "", "", d.truncated()
	}
	quote := d.b[d.pos]
	if quote != '"' && quote != '\'' {
		return "", "", syntaxErr(d.pos, "attribute value must be quoted")
	}
	d.pos++
	b := d.b
	vs := d.pos
	decode := false
	i := vs
	for {
		if i >= len(b) {
			d.pos = i
			return "", "", d.truncated()
		}
		c := b[i]
		if attrPlain[c] {
			i++
			continue
		}
		if c == quote {
			break
		}
		switch {
		case c == '"' || c == '\'':
			i++
		case c == '<':
			return "", "", syntaxErr(i, "'<' in attribute value")
		case c == '&':
			_, size, reason := parseRef(b, i)
			if reason != "" {
				return "", "", syntaxErr(i, reason)
			}
			decode = true
			i += size
		case c == '\t' || c == '\n' || c == '\r':
			decode = true
			i++
		case c >= utf8.RuneSelf:
			size, err := checkRune(b, i)
			if err != nil {
				return "", "", err
			}
			i += size
		default:
			return "", "", syntaxErr(i, "control character")
		}
	}
	d.pos = i + 1
	key = d.str(b[start:end])
	if decode {
		return key, unescape(b[vs:i], true), nil
	}
	return key, d.str(b[vs:i]), nil
}

// checkRune checks the (valid UTF-8) character at b[i] above ASCII and returns its size.
func checkRune(b []byte, i int) (int, error) {
	r, size := utf8.DecodeRune(b[i:])
	if !isXMLChar(r) {
		return 0, syntaxErr(i, "character not allowed in XML 1.0")
	}
	return size, nil
}

// name scans an XML name at d.pos and reports whether it holds ':'.
func (d *decoder) name() (start, end int, colon bool, err error) {
	b := d.b
	i := d.pos
	if i >= len(b) {
		return 0, 0, false, d.truncated()
	}
	if c := b[i]; c < utf8.RuneSelf {
		if !nameStartASCII[c] {
			return 0, 0, false, syntaxErr(i, "expected a name")
		}
		i++
	} else {
		r, size := utf8.DecodeRune(b[i:])
		if !isNameStartRune(r) {
			return 0, 0, false, syntaxErr(i, "expected a name")
		}
		i += size
	}
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			if !nameASCII[c] {
				break
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if !isNameRune(r) {
			break
		}
		i += size
	}
	for _, c := range b[d.pos:i] {
		if c == ':' {
			colon = true
			break
		}
	}
	start, d.pos = d.pos, i
	return start, i, colon, nil
}

// content reads what follows the start tag up to and including the matching end tag.
// tagStart:tagEnd is the start tag's name in the frame.
func (d *decoder) content(n *Node, tagStart, tagEnd int) error {
	mark := len(d.stack)
	textStart, textEnd := -1, -1
	textDecode, textSeen := false, false
	for {
		segStart := d.pos
		nonWS, decode, err := d.text()
		if err != nil {
			return err
		}
		if d.pos > segStart {
			if nonWS && len(d.stack) > mark {
				return syntaxErr(segStart, "text after a child element (mixed content)")
			}
			textStart, textEnd, textDecode = segStart, d.pos, decode
			textSeen = textSeen || nonWS
		}
		if d.pos+1 >= len(d.b) {
			return d.truncated()
		}
		if d.b[d.pos+1] == '/' {
			break
		}
		if err := d.markup(); err != nil {
			return err
		}
		if textSeen {
			return syntaxErr(d.pos, "child element after text (mixed content)")
		}
		child, err := d.element()
		if err != nil {
			return err
		}
		if len(d.stack) == cap(d.stack) {
			// Double, where append would grow large slices by only 1.25x and so
			// allocate several times the final size in total.
			grown := make([]Node, len(d.stack), max(16, 2*cap(d.stack)))
			copy(grown, d.stack)
			d.stack = grown
		}
		d.stack = append(d.stack, child)
	}
	// End tag.
	d.pos += 2
	start, end, _, err := d.name()
	if err != nil {
		return err
	}
	if string(d.b[start:end]) != string(d.b[tagStart:tagEnd]) {
		return syntaxErr(start, fmt.Sprintf("end tag does not match the start tag at byte %d", tagStart-1))
	}
	d.skipSpace()
	if d.pos >= len(d.b) {
		return d.truncated()
	}
	if d.b[d.pos] != '>' {
		return syntaxErr(d.pos, "expected '>' in end tag")
	}
	d.pos++

	switch {
	case len(d.stack) > mark:
		children := make([]Node, len(d.stack)-mark)
		copy(children, d.stack[mark:])
		clear(d.stack[mark:])
		d.stack = d.stack[:mark]
		n.Content = children
	case textStart >= 0:
		if textDecode {
			n.Content = unescape(d.b[textStart:textEnd], false)
		} else {
			n.Content = d.str(d.b[textStart:textEnd])
		}
	}
	return nil
}

// text scans character data up to the next '<' (or the end of the frame), checking it
// as it goes. nonWS says whether it holds more than whitespace, decode whether it needs
// unescape.
func (d *decoder) text() (nonWS, decode bool, err error) {
	b := d.b
	i := d.pos
	for i < len(b) && isSpace(b[i]) {
		if b[i] == '\r' {
			decode = true
		}
		i++
	}
	nonWS = i < len(b) && b[i] != '<'
	for i < len(b) {
		c := b[i]
		if textPlain[c] {
			i++
			continue
		}
		switch {
		case c == '<':
			d.pos = i
			return nonWS, decode, nil
		case c == '&':
			_, size, reason := parseRef(b, i)
			if reason != "" {
				return false, false, syntaxErr(i, reason)
			}
			decode = true
			i += size
		case c == '\r':
			decode = true
			i++
		case c == ']':
			if i+2 < len(b) && b[i+1] == ']' && b[i+2] == '>' {
				return false, false, syntaxErr(i, "']]>' is not allowed in text")
			}
			i++
		case c >= utf8.RuneSelf:
			size, err := checkRune(b, i)
			if err != nil {
				return false, false, err
			}
			i += size
		default:
			return false, false, syntaxErr(i, "control character")
		}
	}
	d.pos = i
	return nonWS, decode, nil
}

// str copies a name or value out of the frame, reusing a constant for the common ones.
func (d *decoder) str(b []byte) string {
	if len(b) <= maxInterned {
		if s, ok := interned[string(b)]; ok {
			return s
		}
	}
	return string(b)
}

const maxInterned = 16

// interned are the names and short values of PROTOCOL.md; decoding them costs no
// allocation.
var interned = func() map[string]string {
	words := []string{
		// tags
		"iq", "message", "receipt", "ack", "notification", "chatstate", "success",
		"failure", "ib", "stream:error", "error", "ping", "participants", "to", "enc",
		"list", "item", "retry", "registration", "keys", "composing", "paused", "count",
		"identity", "key", "value", "skey", "signature", "user", "rotate", "usync",
		"query", "devices", "device-list", "device", "add", "remove", "contact",
		"create", "participant", "group", "promote", "demote", "subject", "description",
		"body", "leave", "media_conn", "host", "offline", "conflict", "restriction",
		"spam_list", "blocklist",
		// attribute names
		"id", "from", "type", "t", "xmlns", "class", "jid", "v", "phash", "mediatype",
		"edit", "code", "text", "reason", "retry_after", "notify", "new", "mode",
		"context", "version", "s_t", "creation", "creator", "request", "auth", "ttl",
		"hostname", "action", "until", "media",
		// values
		"s.whatsapp.net", "g.us", "result", "get", "set", "msg", "pkmsg", "skmsg",
		"read", "played", "encrypt", "w:p", "w:g2", "w:m", "w:gp2", "spam", "admin",
		"superadmin", "in", "out", "image", "video", "ptt", "audio", "document",
		"reaction", "interactive", "block", "unblock", "replaced", "account_sync",
		"400", "401", "403", "404", "406", "409", "412", "413", "429", "500", "503",
		"515",
	}
	m := make(map[string]string, len(words))
	for _, w := range words {
		m[w] = w
	}
	return m
}()
