package msgconv

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// wordJoiner is the invisible character that keeps a literal marker from pairing.
const wordJoiner = '\u2060'

// While rendering, the markers we generate are private-use placeholders, so the final
// pass (finishMarkup) can tell them from literal markers in the text and escape only those.
const (
	phBold   = '\uE001'
	phItalic = '\uE002'
	phStrike = '\uE003'
	phCode   = '\uE004'
	// phPrefix marks where a quote or list prefix starts, so inline formatting around a
	// block can put its markers after the prefix rather than before.
	phPrefix = '\uE005'
)

func placeholder(marker byte) string {
	switch marker {
	case '*':
		return string(phBold)
	case '_':
		return string(phItalic)
	case '~':
		return string(phStrike)
	}
	return string(phCode)
}

func isPlaceholder(r rune) bool { return r >= phBold && r <= phCode }

var (
	phFence        = strings.Repeat(string(phCode), 3)
	neutralizePhs  = strings.NewReplacer(string(phBold), "\uFFFD", string(phItalic), "\uFFFD", string(phStrike), "\uFFFD", string(phCode), "\uFFFD", string(phPrefix), "\uFFFD")
	placeholderOut = strings.NewReplacer(string(phBold), "*", string(phItalic), "_", string(phStrike), "~", string(phCode), "`")
)

func isMarker(b byte) bool {
	return b == '*' || b == '_' || b == '~' || b == '`'
}

// isBoundary is true for what may stand beside a marker for it to count: nothing (i < 0
// or past the end), whitespace, punctuation or symbols. Letters, digits and format
// characters such as the word joiner are not boundaries.
func isBoundary(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r)
}

// finishMarkup turns placeholders into markers and escapes the literal markers: a word
// joiner goes before one that could open formatting and after one that could close it.
// A joiner between a generated closer and a literal marker would stop that closer
// counting (likewise a literal marker and a generated opener), so those sides stay bare.
// Code and words that look like URLs are left alone, since an invisible character inside
// a link would break it.
func finishMarkup(s string) string {
	s = escapeLinePrefixes(s)
	if !strings.ContainsAny(s, "*_~`"+string(phCode)) {
		return placeholderOut.Replace(s)
	}
	f := finisher{runes: []rune(s)}
	f.b.Grow(len(s) + 16)
	for ws := 0; ws < len(f.runes); {
		if unicode.IsSpace(f.runes[ws]) {
			f.b.WriteRune(f.runes[ws])
			ws++
			continue
		}
		we := ws
		for we < len(f.runes) && !unicode.IsSpace(f.runes[we]) {
			we++
		}
		word := string(f.runes[ws:we])
		isURL := strings.Contains(word, "://") || strings.HasPrefix(word, "www.")
		for i := ws; i < we; i++ {
			r := f.runes[i]
			switch {
			case r == phCode:
				if i+2 < we && f.runes[i+1] == phCode && f.runes[i+2] == phCode && !f.open[phCode-phBold] {
					f.b.WriteString("```")
					f.inFence = !f.inFence
					i += 2
				} else {
					f.inlineCode(i)
				}
			case isPlaceholder(r):
				f.b.WriteString(placeholderOut.Replace(string(r)))
				f.open[r-phBold] = !f.open[r-phBold]
			case r < utf8.RuneSelf && isMarker(byte(r)) && !f.open[phCode-phBold] && !f.inFence && !isURL:
				f.escapedMarker(i)
			default:
				f.b.WriteRune(r)
			}
		}
		ws = we
	}
	return f.b.String()
}

// escapeLinePrefixes puts a word joiner before a literal "> ", "- ", "* " or "1. " that
// starts a line, which WhatsApp would show as a quote or list, and drops the marks of
// the generated prefixes. Lines inside code blocks are left alone.
func escapeLinePrefixes(s string) string {
	lines := strings.Split(s, "\n")
	inFence := false
	for i, line := range lines {
		generated := strings.Contains(line, string(phPrefix))
		if generated {
			line = strings.ReplaceAll(line, string(phPrefix), "")
		} else if !inFence && looksLikeBlockPrefix(line) {
			line = string(wordJoiner) + line
		}
		lines[i] = line
		if strings.Count(line, phFence)%2 == 1 {
			inFence = !inFence
		}
	}
	return strings.Join(lines, "\n")
}

func looksLikeBlockPrefix(line string) bool {
	if strings.HasPrefix(line, "> ") || strings.HasPrefix(line, "- ") || strings.HasPrefix(line, "* ") {
		return true
	}
	digits := 0
	for digits < len(line) && digits < 9 && line[digits] >= '0' && line[digits] <= '9' {
		digits++
	}
	return digits > 0 && strings.HasPrefix(line[digits:], ". ")
}

type finisher struct {
	runes     []rune
	b         strings.Builder
	open      [4]bool // per placeholder kind: inside a generated pair
	inFence   bool
	codeFence bool // the open inline code pair is written as ``` … ```
}

// inlineCode writes one backtick of an inline code pair. Single backticks only count
// between boundaries, so a pair glued to letters (a<code>b</code>c) gets WhatsApp's
// older ``` fences instead, which count anywhere.
func (f *finisher) inlineCode(i int) {
	const kind = phCode - phBold
	if f.open[kind] {
		f.open[kind] = false
		if f.codeFence {
			f.b.WriteString("```")
		} else {
			f.b.WriteByte('`')
		}
		return
	}
	f.open[kind] = true
	j := i + 1
	for j < len(f.runes) && f.runes[j] != phCode {
		j++
	}
	bare := func(k int) bool {
		return k < 0 || k >= len(f.runes) || isBoundary(f.runes[k]) || isPlaceholder(f.runes[k])
	}
	f.codeFence = !bare(i-1) || !bare(j+1)
	if f.codeFence {
		f.b.WriteString("```")
	} else {
		f.b.WriteByte('`')
	}
}

// isOpen tells whether a generated marker r is (at this point of the output) open.
func (f *finisher) isOpen(r rune) bool {
	if r == phCode {
		return f.open[phCode-phBold] || f.inFence
	}
	return f.open[r-phBold]
}

func (f *finisher) escapedMarker(i int) {
	prev, next := rune(-1), rune(-1)
	if i > 0 {
		prev = f.runes[i-1]
	}
	if i+1 < len(f.runes) {
		next = f.runes[i+1]
	}
	couldOpen := (prev < 0 || isBoundary(prev) || isPlaceholder(prev)) && next >= 0 && !unicode.IsSpace(next)
	couldClose := prev >= 0 && !unicode.IsSpace(prev) && (next < 0 || isBoundary(next) || isPlaceholder(next))
	// A generated marker just before is a closer when its pair is no longer open; one
	// just after is an opener when its pair is not open yet.
	prevCloser := isPlaceholder(prev) && !f.isOpen(prev)
	nextOpener := isPlaceholder(next) && !f.isOpen(next)
	// A joiner on one side alone can turn a dead side live (a marker after a space gets
	// a non-space neighbour and may close), so an escaped marker gets both.
	escape := couldOpen || couldClose
	before := escape && !prevCloser
	after := escape && !nextOpener
	// Beside a generated marker only one side can take a joiner, and that joiner leaves
	// the marker able to open (after a closer) or to close (before an opener). Either is
	// harmless unless it meets a pair of its own kind, so pick by whether one is open.
	insideSame := f.open[strings.IndexRune("*_~`", f.runes[i])]
	if prevCloser {
		after = after && insideSame
	}
	if nextOpener {
		before = before && !insideSame
	}
	if before {
		f.b.WriteRune(wordJoiner)
	}
	f.b.WriteRune(f.runes[i])
	if after {
		f.b.WriteRune(wordJoiner)
	}
}
