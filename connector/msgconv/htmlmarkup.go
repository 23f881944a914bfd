package msgconv

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// maxHTMLDepth bounds the element nesting we follow; deeper content is kept as plain text
// so hostile nesting costs linear time, not quadratic.
const maxHTMLDepth = 64

// pieceKind says how a rendered node joins its siblings.
type pieceKind int

const (
	inlinePiece pieceKind = iota
	breakPiece            // <br>
	blockPiece            // a block separated by one newline
	paraPiece             // a paragraph separated by a blank line
)

type piece struct {
	s    string
	kind pieceKind
}

// markupState is what the enclosing elements mean for the text inside them.
type markupState struct {
	bold, italic, strike bool
	code                 bool // inside <code> or <pre>: no markers, no escaping
	pre                  bool // inside <pre>: whitespace kept
	depth                int
}

// htmlToMarkup turns Matrix HTML into WhatsApp markup and collects mentioned JIDs.
type htmlToMarkup struct {
	ctx      context.Context
	resolver MentionResolver
	mentions []jid.JID
}

// convert fails when the parser gives up, which it does on absurdly deep nesting.
func (h *htmlToMarkup) convert(htmlText string) (string, error) {
	body := &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body}
	nodes, err := html.ParseFragment(strings.NewReader(htmlText), body)
	if err != nil {
		return "", fmt.Errorf("failed to parse HTML: %w", err)
	}
	for _, n := range nodes {
		body.AppendChild(n)
	}
	return finishMarkup(strings.TrimSpace(h.children(body, markupState{}))), nil
}

func (h *htmlToMarkup) addMention(j jid.JID) {
	if !slices.Contains(h.mentions, j) {
		h.mentions = append(h.mentions, j)
	}
}

func (h *htmlToMarkup) children(n *html.Node, st markupState) string {
	var pieces []piece
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		s, kind := h.node(c, st)
		pieces = append(pieces, piece{s, kind})
	}
	return joinPieces(pieces, st.pre)
}

// joinPieces puts inline text side by side and blocks on their own lines, dropping the
// whitespace HTML authors leave between blocks.
func joinPieces(pieces []piece, pre bool) string {
	var out []byte
	pendingLines := 0
	trimNext := false
	for _, p := range pieces {
		switch p.kind {
		case breakPiece:
			if pendingLines > 0 {
				// A break right after a block adds a blank line before what follows.
				pendingLines++
				continue
			}
			if !pre {
				out = trimTrailingSpaces(out)
			}
			out = append(out, '\n')
			trimNext = !pre
			continue
		case blockPiece, paraPiece:
			if p.s == "" {
				continue
			}
			sep := int(p.kind - breakPiece)
			if len(out) > 0 {
				out = trimTrailingSpaces(out)
				for range max(pendingLines, sep) - trailingNewlines(out) {
					out = append(out, '\n')
				}
			}
			out = append(out, p.s...)
			pendingLines = sep
			trimNext = true
			continue
		}
		s := p.s
		if trimNext && !pre {
			s = strings.TrimLeft(s, " ")
		}
		if s == "" {
			continue
		}
		if pendingLines > 0 {
			out = trimTrailingSpaces(out)
			for range pendingLines - trailingNewlines(out) {
				out = append(out, '\n')
			}
			pendingLines = 0
		}
		if !pre && len(out) > 0 && out[len(out)-1] == ' ' && s[0] == ' ' {
			s = s[1:]
		}
		out = append(out, s...)
		trimNext = false
	}
	return string(out)
}

func trimTrailingSpaces(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

func trailingNewlines(b []byte) int {
	n := 0
	for n < len(b) && b[len(b)-1-n] == '\n' {
		n++
	}
	return n
}

func (h *htmlToMarkup) node(n *html.Node, st markupState) (string, pieceKind) {
	switch n.Type {
	case html.TextNode:
		return h.text(n.Data, st), inlinePiece
	case html.ElementNode:
	default:
		return "", inlinePiece
	}
	st.depth++
	if st.depth > maxHTMLDepth {
		return flatText(n), inlinePiece
	}
	switch n.DataAtom {
	case atom.Br:
		return "", breakPiece
	case atom.P:
		return strings.TrimSpace(h.children(n, st)), paraPiece
	case atom.Div, atom.Tr, atom.Table, atom.Li, atom.Dl, atom.Dt, atom.Dd, atom.Details, atom.Summary:
		return strings.TrimSpace(h.children(n, st)), blockPiece
	case atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6:
		return h.wrap('*', strings.TrimSpace(h.children(n, withBold(st))), st), paraPiece
	case atom.Blockquote:
		return quoteLines(strings.TrimSpace(h.children(n, st))), blockPiece
	case atom.Ul, atom.Ol:
		return h.list(n, st), blockPiece
	case atom.Pre:
		return h.pre(n, st), blockPiece
	case atom.Hr:
		return "---", blockPiece
	case atom.Code, atom.Tt, atom.Kbd, atom.Samp:
		return h.inlineCode(n, st), inlinePiece
	case atom.B, atom.Strong:
		return h.wrap('*', h.children(n, withBold(st)), st), inlinePiece
	case atom.I, atom.Em:
		inner := st
		inner.italic = true
		return h.wrap('_', h.children(n, inner), st), inlinePiece
	case atom.S, atom.Del, atom.Strike:
		inner := st
		inner.strike = true
		return h.wrap('~', h.children(n, inner), st), inlinePiece
	case atom.A:
		return h.link(n, st), inlinePiece
	case atom.Img:
		return h.text(attr(n, "alt"), st), inlinePiece
	case atom.Script, atom.Style, atom.Head, atom.Title:
		return "", inlinePiece
	}
	if n.Data == "mx-reply" {
		// Reply fallbacks repeat the replied-to message; WhatsApp shows the quote itself.
		return "", inlinePiece
	}
	return h.children(n, st), inlinePiece
}

func withBold(st markupState) markupState {
	st.bold = true
	return st
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// flatText is the text of a subtree without any markup, collected without recursion.
func flatText(n *html.Node) string {
	var b strings.Builder
	stack := []*html.Node{n}
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if cur.Type == html.TextNode {
			b.WriteString(cur.Data)
		}
		for c := cur.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, c)
		}
	}
	return collapseSpace(b.String())
}

// wrap puts a marker pair around every non-blank line of s, keeping the line's outer
// spaces outside, because WhatsApp's inline markers neither span lines nor start or end
// with a space.
func (h *htmlToMarkup) wrap(marker byte, s string, outer markupState) string {
	if outer.code || (marker == '*' && outer.bold) || (marker == '_' && outer.italic) ||
		(marker == '~' && outer.strike) {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		prefix := blockPrefixLen(line)
		core := strings.TrimSpace(line[prefix:])
		if core == "" {
			continue
		}
		start := prefix + strings.Index(line[prefix:], core)
		lines[i] = line[:start] + placeholder(marker) + core + placeholder(marker) + line[start+len(core):]
	}
	return strings.Join(lines, "\n")
}

// blockPrefixLen measures the quote and list prefixes a block inside inline formatting
// left at the start of a line; markers go after them so the line keeps its meaning.
func blockPrefixLen(line string) int {
	const mark = string(phPrefix)
	i := 0
	for {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if !strings.HasPrefix(line[i:], mark) {
			return i
		}
		i += len(mark)
		sp := strings.IndexByte(line[i:], ' ')
		if sp < 0 {
			return len(line)
		}
		i += sp + 1
	}
}

func quoteLines(s string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		if line == "" {
			lines[i] = string(phPrefix) + ">"
		} else {
			lines[i] = string(phPrefix) + "> " + line
		}
	}
	return strings.Join(lines, "\n")
}

func (h *htmlToMarkup) list(n *html.Node, st markupState) string {
	ordered := n.DataAtom == atom.Ol
	counter := 1
	if start, err := strconv.Atoi(attr(n, "start")); ordered && err == nil && start >= 0 && start < 1e9 {
		counter = start
	}
	var items []string
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode || c.DataAtom != atom.Li {
			continue
		}
		prefix := "- "
		if ordered {
			prefix = strconv.Itoa(counter) + ". "
			counter++
		}
		content := strings.TrimSpace(h.children(c, st))
		indent := strings.Repeat(" ", len(prefix))
		lines := strings.Split(content, "\n")
		for i := 1; i < len(lines); i++ {
			if lines[i] != "" {
				lines[i] = indent + lines[i]
			}
		}
		items = append(items, string(phPrefix)+prefix+strings.Join(lines, "\n"))
	}
	return strings.Join(items, "\n")
}

func (h *htmlToMarkup) pre(n *html.Node, st markupState) string {
	st.code, st.pre = true, true
	code := h.children(n, st)
	code = strings.TrimSuffix(code, "\n")
	if strings.TrimSpace(code) == "" {
		return ""
	}
	// A fence inside the code would end the block early; break it invisibly.
	return phFence + fenceSafe(code) + phFence
}

// fenceSafe keeps code from ending its ``` fence early: a fence inside is broken with a
// word joiner, and so is a backtick at either end, which would merge with the fence.
func fenceSafe(code string) string {
	code = strings.ReplaceAll(code, "```", "``\u2060`")
	if strings.HasPrefix(code, "`") {
		code = "\u2060" + code
	}
	if strings.HasSuffix(code, "`") {
		code += "\u2060"
	}
	return code
}

func (h *htmlToMarkup) inlineCode(n *html.Node, st markupState) string {
	if st.code {
		return h.children(n, st)
	}
	st.code = true
	code := h.children(n, st)
	if strings.TrimSpace(code) == "" {
		return code
	}
	fence := string(phCode)
	if strings.Contains(code, "`") {
		fence = phFence
		code = fenceSafe(code)
	}
	lines := strings.Split(code, "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) != "" {
			lines[i] = fence + line + fence
		}
	}
	return strings.Join(lines, "\n")
}

func (h *htmlToMarkup) link(n *html.Node, st markupState) string {
	href := strings.TrimSpace(attr(n, "href"))
	text := h.children(n, st)
	if uri, err := id.ParseMatrixURIOrMatrixToURL(href); err == nil && uri != nil && uri.Sigil1 == '@' {
		if h.resolver != nil {
			if j, ok := h.resolver.JIDForMXID(h.ctx, uri.UserID()); ok && j.User != "" {
				h.addMention(j.ToUser())
				return "@" + j.User
			}
		}
		if strings.TrimSpace(text) == "" {
			return string(uri.UserID())
		}
		return text
	}
	if href == "" {
		return text
	}
	plain := strings.TrimSpace(text)
	switch plain {
	case "", href, strings.TrimPrefix(href, "mailto:"), strings.TrimPrefix(href, "https://"),
		strings.TrimPrefix(href, "http://"):
		return href
	}
	return text + " (" + href + ")"
}

func collapseSpace(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' {
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	if space {
		b.WriteByte(' ')
	}
	return b.String()
}

func (h *htmlToMarkup) text(s string, st markupState) string {
	if strings.ContainsAny(s, string([]rune{phBold, phItalic, phStrike, phCode, phPrefix})) {
		s = neutralizePhs.Replace(s)
	}
	if st.pre {
		return s
	}
	return collapseSpace(s)
}
