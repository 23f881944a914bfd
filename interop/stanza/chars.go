package stanza

import (
	"strings"
	"unicode/utf8"
)

// Byte classes for the scanners, so the hot loops are one table load per byte.
var (
	// textPlain: bytes that text may hold and that need no decoding or further check.
	textPlain [256]bool
	// attrPlain: the same for attribute values (whitespace other than ' ' is normalised
	// and quotes end the value, so neither is plain).
	attrPlain [256]bool
	// nameStartASCII / nameASCII: the ASCII part of XML 1.0's NameStartChar / NameChar,
	// ':' included (callers decide where a prefix is allowed).
	nameStartASCII [256]bool
	nameASCII      [256]bool
)

func init() {
	for c := 0x20; c < 0x80; c++ {
		switch c {
		case '<', '&', ']':
		default:
			textPlain[c] = true
		}
		switch c {
		case '<', '&', '"', '\'':
		default:
			attrPlain[c] = true
		}
	}
	textPlain['\t'] = true
	textPlain['\n'] = true
	for c := 'a'; c <= 'z'; c++ {
		nameStartASCII[c] = true
		nameStartASCII[c-'a'+'A'] = true
	}
	nameStartASCII['_'] = true
	nameStartASCII[':'] = true
	nameASCII = nameStartASCII
	for c := '0'; c <= '9'; c++ {
		nameASCII[c] = true
	}
	nameASCII['-'] = true
	nameASCII['.'] = true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isNameStartRune is XML 1.0 (5th edition) NameStartChar above ASCII.
func isNameStartRune(r rune) bool {
	switch {
	case r >= 0xC0 && r <= 0xD6, r >= 0xD8 && r <= 0xF6, r >= 0xF8 && r <= 0x2FF,
		r >= 0x370 && r <= 0x37D, r >= 0x37F && r <= 0x1FFF, r >= 0x200C && r <= 0x200D,
		r >= 0x2070 && r <= 0x218F, r >= 0x2C00 && r <= 0x2FEF, r >= 0x3001 && r <= 0xD7FF,
		r >= 0xF900 && r <= 0xFDCF, r >= 0xFDF0 && r <= 0xFFFD, r >= 0x10000 && r <= 0xEFFFF:
		return true
	}
	return false
}

// isNameRune is XML 1.0 NameChar above ASCII.
func isNameRune(r rune) bool {
	return isNameStartRune(r) || r == 0xB7 || (r >= 0x300 && r <= 0x36F) || (r >= 0x203F && r <= 0x2040)
}

// isXMLChar is XML 1.0's Char production: what a document may hold at all, literally or
// through a character reference.
func isXMLChar(r rune) bool {
	switch {
	case r >= 0x20 && r <= 0xD7FF:
		return true
	case r == '\t' || r == '\n' || r == '\r':
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	case r >= 0x10000 && r <= utf8.MaxRune:
		return true
	}
	return false
}

// validName checks a whole name for Marshal: an XML name without prefix, or the one
// prefixed tag the protocol uses.
func validName(s string, tag bool) bool {
	if s == "" {
		return false
	}
	if tag && s == "stream:error" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c == ':' {
			return false
		}
		if c < utf8.RuneSelf {
			if (i == 0 && !nameStartASCII[c]) || !nameASCII[c] {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if size == 1 || (i == 0 && !isNameStartRune(r)) || !isNameRune(r) {
			return false
		}
		i += size
	}
	return true
}

// parseRef reads the reference that starts with '&' at b[i]. It accepts the five
// predefined entities and decimal or hex character references of XML characters, and
// returns the character and the reference's length; reason is set when it is refused.
func parseRef(b []byte, i int) (r rune, n int, reason string) {
	j := i + 1
	if j < len(b) && b[j] == '#' {
		j++
		hex := false
		if j < len(b) && b[j] == 'x' {
			hex = true
			j++
		}
		start := j
		var v rune
		for ; j < len(b); j++ {
			c := b[j]
			var d rune
			switch {
			case c >= '0' && c <= '9':
				d = rune(c - '0')
			case hex && c >= 'a' && c <= 'f':
				d = rune(c-'a') + 10
			case hex && c >= 'A' && c <= 'F':
				d = rune(c-'A') + 10
			default:
				goto done
			}
			if hex {
				v = v*16 + d
			} else {
				v = v*10 + d
			}
			// Saturate instead of overflowing; leading zeros keep v small and are legal.
			if v > utf8.MaxRune {
				v = utf8.MaxRune + 1
			}
		}
	done:
		if j >= len(b) {
			return 0, 0, "truncated character reference"
		}
		if j == start || b[j] != ';' {
			return 0, 0, "malformed character reference"
		}
		if !isXMLChar(v) {
			return 0, 0, "character reference to a character XML 1.0 does not allow"
		}
		return v, j + 1 - i, ""
	}
	// The name is short for every accepted entity; stop early so a long run of name
	// characters is not scanned twice.
	for ; j < len(b) && j-i <= 5; j++ {
		if b[j] == ';' {
			switch string(b[i+1 : j]) {
			case "lt":
				return '<', j + 1 - i, ""
			case "gt":
				return '>', j + 1 - i, ""
			case "amp":
				return '&', j + 1 - i, ""
			case "quot":
				return '"', j + 1 - i, ""
			case "apos":
				return '\'', j + 1 - i, ""
			}
			break
		}
	}
	if j >= len(b) {
		return 0, 0, "truncated entity reference"
	}
	return 0, 0, "entity reference other than the five predefined ones (entities are not allowed)"
}

// unescape decodes a validated text or attribute value: references, line endings
// (CR LF and CR become LF), and for attributes XML's value normalisation (literal tab,
// LF and CR become a space). The output is never longer than the input.
func unescape(raw []byte, attr bool) string {
	var out strings.Builder
	out.Grow(len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		switch c {
		case '&':
			r, n, _ := parseRef(raw, i)
			out.WriteRune(r)
			i += n
			continue
		case '\r':
			if i+1 < len(raw) && raw[i+1] == '\n' {
				i++
			}
			c = '\n'
		}
		if attr && (c == '\n' || c == '\t') {
			c = ' '
		}
		out.WriteByte(c)
		i++
	}
	return out.String()
}
