package msgconv

import (
	"html"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// pill is what a mention of one user part becomes on Matrix.
type pill struct {
	userID      id.UserID
	displayname string
}

// markupToHTML renders WhatsApp markup as Matrix HTML. Rules, as WhatsApp applies them:
//   - ```fenced``` text is monospace and may span lines; nothing inside it is parsed. A fence
//     that holds a line break or stands alone on its line becomes <pre><code>, one inside
//     a sentence becomes <code>.
//   - *bold*, _italic_, ~strike~ and `code` need a boundary (start, space, punctuation or
//     symbol) before the opening marker and after the closing one, no space just inside
//     either marker, at least one character between them, and the same line. So
//     snake_case_name and 2*3*4 stay literal. The first closer that fits wins; a kind
//     does not nest inside itself, and nothing is parsed inside `code`.
//   - Lines starting "> " are quotes, "- " or "* " bullets, "1. " numbered items.
//   - @{user} for a user in pills becomes a Matrix pill.
//
// formatted is false when the result is just the escaped text with line breaks.
type markupToHTML struct {
	text      string
	pills     map[string]pill
	out       strings.Builder
	formatted bool
	mentioned []id.UserID // pills written, in order
}

type segment struct {
	start, end int // text, or a fence's content
	fence      bool
}

type logicalLine struct {
	segs []segment
}

const (
	lineText = iota
	lineQuote
	lineBullet
	lineOrdered
)

func (m *markupToHTML) render() string {
	lines := m.splitLines()
	prevKind := -1
	prevEmpty := false
	for i := range lines {
		kind, num := m.classify(&lines[i])
		if kind != prevKind {
			if prevKind == lineText && prevEmpty && i > 1 {
				// A blank line between blocks would vanish without a break.
				m.out.WriteString("<br>")
			}
			m.closeGroup(prevKind)
			m.openGroup(kind, num)
		} else if kind == lineText || kind == lineQuote {
			m.out.WriteString("<br>")
		}
		if kind == lineBullet || kind == lineOrdered {
			m.out.WriteString("<li>")
		}
		m.renderLine(lines[i])
		if kind == lineBullet || kind == lineOrdered {
			m.out.WriteString("</li>")
		}
		prevKind = kind
		prevEmpty = len(lines[i].segs) == 1 && !lines[i].segs[0].fence &&
			strings.TrimSpace(m.text[lines[i].segs[0].start:lines[i].segs[0].end]) == ""
	}
	m.closeGroup(prevKind)
	return m.out.String()
}

func (m *markupToHTML) openGroup(kind, num int) {
	switch kind {
	case lineQuote:
		m.out.WriteString("<blockquote>")
	case lineBullet:
		m.out.WriteString("<ul>")
	case lineOrdered:
		if num != 1 {
			m.out.WriteString(`<ol start="` + strconv.Itoa(num) + `">`)
		} else {
			m.out.WriteString("<ol>")
		}
	default:
		return
	}
	m.formatted = true
}

func (m *markupToHTML) closeGroup(kind int) {
	switch kind {
	case lineQuote:
		m.out.WriteString("</blockquote>")
	case lineBullet:
		m.out.WriteString("</ul>")
	case lineOrdered:
		m.out.WriteString("</ol>")
	}
}

// splitLines cuts the text at line breaks outside fences.
func (m *markupToHTML) splitLines() []logicalLine {
	t := m.text
	var lines []logicalLine
	var cur logicalLine
	pos, textStart := 0, 0
	flushText := func(end int) {
		// Line breaks in plain text end lines.
		for {
			nl := strings.IndexByte(t[textStart:end], '\n')
			if nl < 0 {
				break
			}
			cur.segs = append(cur.segs, segment{start: textStart, end: textStart + nl})
			lines = append(lines, cur)
			cur = logicalLine{}
			textStart += nl + 1
		}
		cur.segs = append(cur.segs, segment{start: textStart, end: end})
	}
	for {
		open := strings.Index(t[pos:], "```")
		if open < 0 {
			break
		}
		open += pos
		// In a longer run of backticks the fence is its last three.
		for open+3 < len(t) && t[open+3] == '`' {
			open++
		}
		closeRel := strings.Index(t[open+3:], "```")
		if closeRel < 0 {
			break
		}
		closeAt := open + 3 + closeRel
		if strings.TrimSpace(t[open+3:closeAt]) == "" {
			pos = closeAt
			continue
		}
		flushText(open)
		cur.segs = append(cur.segs, segment{start: open + 3, end: closeAt, fence: true})
		pos = closeAt + 3
		textStart = pos
	}
	flushText(len(t))
	lines = append(lines, cur)
	return lines
}

// classify finds a line's block prefix and cuts it off the first segment.
func (m *markupToHTML) classify(l *logicalLine) (kind, num int) {
	if len(l.segs) == 0 || l.segs[0].fence {
		return lineText, 0
	}
	first := &l.segs[0]
	s := m.text[first.start:first.end]
	if len(l.segs) == 1 && strings.TrimSpace(s[min(2, len(s)):]) == "" {
		// A bare "- " or "> " is text, not an empty item.
		return lineText, 0
	}
	switch {
	case strings.HasPrefix(s, "> "):
		first.start += 2
		return lineQuote, 0
	case strings.HasPrefix(s, "- "), strings.HasPrefix(s, "* "):
		first.start += 2
		return lineBullet, 0
	}
	digits := 0
	for digits < len(s) && digits < 9 && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits > 0 && strings.HasPrefix(s[digits:], ". ") {
		n, _ := strconv.Atoi(s[:digits])
		first.start += digits + 2
		return lineOrdered, n
	}
	return lineText, 0
}

func (m *markupToHTML) renderLine(l logicalLine) {
	// A fence alone on its line (besides blank text) is a block, like a Matrix <pre>.
	fences, text := 0, false
	for _, seg := range l.segs {
		if seg.fence {
			fences++
		} else if strings.TrimSpace(m.text[seg.start:seg.end]) != "" {
			text = true
		}
	}
	alone := fences == 1 && !text
	for _, seg := range l.segs {
		if !seg.fence {
			m.inline(m.text[seg.start:seg.end])
			continue
		}
		m.formatted = true
		code := unfenceSafe(m.text[seg.start:seg.end])
		if alone || strings.Contains(code, "\n") {
			code = strings.TrimPrefix(code, "\n")
			code = strings.TrimSuffix(code, "\n")
			m.out.WriteString("<pre><code>" + html.EscapeString(code) + "</code></pre>")
		} else {
			m.out.WriteString("<code>" + html.EscapeString(code) + "</code>")
		}
	}
}

// unfenceSafe undoes fenceSafe.
func unfenceSafe(code string) string {
	const wj = "\u2060"
	code = strings.ReplaceAll(code, "``"+wj+"`", "```")
	if rest, ok := strings.CutPrefix(code, wj); ok && strings.HasPrefix(rest, "`") {
		code = rest
	}
	if rest, ok := strings.CutSuffix(code, wj); ok && strings.HasSuffix(rest, "`") {
		code = rest
	}
	return code
}

var markerKinds = [...]struct {
	marker     byte
	open, shut string
}{
	{'*', "<strong>", "</strong>"},
	{'_', "<em>", "</em>"},
	{'~', "<del>", "</del>"},
	{'`', "<code>", "</code>"},
}

const codeKind = 3

func kindOf(b byte) int {
	for k, mk := range markerKinds {
		if mk.marker == b {
			return k
		}
	}
	return -1
}

// inlineParser finds marker pairs in one line in O(n log n): closers depend only on their
// neighbours, so they are listed once and looked up by binary search.
type inlineParser struct {
	s       string
	closers [len(markerKinds)][]int
	m       *markupToHTML
}

func (m *markupToHTML) inline(s string) {
	p := inlineParser{s: s, m: m}
	for i := 0; i < len(s); i++ {
		if k := kindOf(s[i]); k >= 0 && p.canClose(i) {
			p.closers[k] = append(p.closers[k], i)
		}
	}
	p.render(0, len(s), 0)
}

func (p *inlineParser) canOpen(i int) bool {
	// A marker whose twin is inside (** opening, ** closing) does not count, nor one at
	// the end; a twin outside does not matter, so *x** is bold x and a literal star.
	if i+1 >= len(p.s) || p.s[i+1] == p.s[i] {
		return false
	}
	if next, _ := utf8.DecodeRuneInString(p.s[i+1:]); isSpaceRune(next) {
		return false
	}
	if i == 0 {
		return true
	}
	prev, _ := utf8.DecodeLastRuneInString(p.s[:i])
	return isBoundary(prev)
}

func (p *inlineParser) canClose(i int) bool {
	if i == 0 || p.s[i-1] == p.s[i] {
		return false
	}
	prev, _ := utf8.DecodeLastRuneInString(p.s[:i])
	if isSpaceRune(prev) {
		return false
	}
	if i+1 == len(p.s) {
		return true
	}
	next, _ := utf8.DecodeRuneInString(p.s[i+1:])
	return isBoundary(next)
}

func isSpaceRune(r rune) bool {
	return unicode.IsSpace(r)
}

func (p *inlineParser) nextCloser(k, from, hi int) int {
	list := p.closers[k]
	idx := sort.SearchInts(list, from)
	if idx < len(list) && list[idx] < hi {
		return list[idx]
	}
	return -1
}

func (p *inlineParser) render(lo, hi int, active uint8) {
	textStart := lo
	for i := lo; i < hi; i++ {
		k := kindOf(p.s[i])
		if k < 0 || active&(1<<k) != 0 || !p.canOpen(i) {
			continue
		}
		if i == textStart && i > lo && p.s[i-1] == p.s[i] {
			// *a** is bold a and a literal star, never the start of a second span.
			continue
		}
		j := p.nextCloser(k, i+2, hi)
		if j < 0 || strings.Trim(p.s[i+1:j], "\u2060") == "" {
			continue
		}
		p.m.literal(stripJoiners(p.s, textStart, i))
		p.m.formatted = true
		p.m.out.WriteString(markerKinds[k].open)
		if k == codeKind {
			p.m.out.WriteString(html.EscapeString(p.s[i+1 : j]))
		} else {
			p.render(i+1, j, active|1<<k)
		}
		p.m.out.WriteString(markerKinds[k].shut)
		i = j
		textStart = j + 1
	}
	p.m.literal(stripJoiners(p.s, textStart, hi))
}

// literal writes plain text: escaped, mentions as pills.
func (m *markupToHTML) literal(s string) {
	for {
		at := strings.IndexByte(s, '@')
		if at < 0 {
			break
		}
		end := at + 1
		for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '-') {
			end++
		}
		p, ok := m.pills[s[at+1:end]]
		if !ok {
			m.out.WriteString(html.EscapeString(s[:at+1]))
			s = s[at+1:]
			continue
		}
		m.out.WriteString(html.EscapeString(s[:at]))
		name := p.displayname
		if name == "" {
			name = string(p.userID)
		}
		m.out.WriteString(`<a href="` + html.EscapeString(p.userID.URI().MatrixToURL()) + `">` +
			html.EscapeString(name) + "</a>")
		m.formatted = true
		m.mentioned = append(m.mentioned, p.userID)
		s = s[end:]
	}
	m.out.WriteString(html.EscapeString(s))
}

// stripJoiners returns s[lo:hi] without the word joiners escapeMarkers puts beside
// markers; the neighbours are looked up in all of s, since the marker may be one the
// parser consumed just outside the range.
func stripJoiners(s string, lo, hi int) string {
	const wj = "\u2060"
	part := s[lo:hi]
	if !strings.Contains(part, wj) {
		return part
	}
	var b strings.Builder
	for i := lo; i < hi; {
		if !strings.HasPrefix(s[i:hi], wj) {
			b.WriteByte(s[i])
			i++
			continue
		}
		// A run of joiners goes as one: the escapes of a line prefix and of a marker meet.
		e := i
		for strings.HasPrefix(s[e:], wj) {
			e += len(wj)
		}
		before := i > 0 && isMarker(s[i-1])
		after := e < len(s) && isMarker(s[e])
		// escapeLinePrefixes puts one before a line's literal quote or list prefix.
		lineStart := (i == 0 || s[i-1] == '\n') && e < len(s) && isPrefixStart(s[e])
		if !before && !after && !lineStart {
			b.WriteString(s[i:min(e, hi)])
		}
		i = min(e, hi)
	}
	return b.String()
}

func isPrefixStart(b byte) bool {
	return b == '>' || b == '-' || b == '*' || b >= '0' && b <= '9'
}

// plainBody is the Matrix body for a WhatsApp text: the text with word joiners beside
// markers dropped and mentions replaced by display names.
func plainBody(text string, pills map[string]pill) string {
	text = stripJoiners(text, 0, len(text))
	if len(pills) == 0 {
		return text
	}
	var b strings.Builder
	for {
		at := strings.IndexByte(text, '@')
		if at < 0 {
			break
		}
		end := at + 1
		for end < len(text) && (text[end] >= '0' && text[end] <= '9' || text[end] == '-') {
			end++
		}
		p, ok := pills[text[at+1:end]]
		if !ok || p.displayname == "" {
			b.WriteString(text[:at+1])
			text = text[at+1:]
			continue
		}
		b.WriteString(text[:at])
		b.WriteString(p.displayname)
		text = text[end:]
	}
	b.WriteString(text)
	return b.String()
}
