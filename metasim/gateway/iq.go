package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// iqError is the <error code text/> of an iq answer.
type iqError struct {
	code int
	text string
}

func badRequest(text string) *iqError { return &iqError{code: 400, text: text} }

// internalError is the answer when the gateway itself failed; the cause is logged,
// never sent.
var internalError = &iqError{code: 500, text: "internal error"}

// iqHandler answers one iq with the result's children or an error.
type iqHandler func(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError)

// handleIQ answers an iq (section 3.1). Unknown namespaces get 404, malformed
// requests 400; a gateway failure 500. Nothing a client sends may crash it.
func (s *session) handleIQ(ctx context.Context, n stanza.Node) {
	id, typ := n.Attr("id"), n.Attr("type")
	if id == "" || typ == "result" || typ == "error" {
		// No id: nothing to answer to. Results: the gateway asks nothing of clients.
		return
	}
	var result []stanza.Node
	var ierr *iqError
	if typ != "get" && typ != "set" {
		ierr = badRequest("iq type must be get or set")
	} else {
		var handler iqHandler
		switch n.Attr("xmlns") {
		case "w:p":
			if s.g.faults.pingsStopped(s.endpoint) {
				return
			}
			handler = func(context.Context, stanza.Node) ([]stanza.Node, *iqError) { return nil, nil }
		case "encrypt":
			handler = s.handleEncrypt
		case "usync":
			handler = s.handleUsync
		case "w:g2":
			handler = s.handleGroupIQ
		case "w:m":
			handler = s.handleMediaConn
		case "blocklist":
			handler = s.handleBlocklist
		case "spam":
			handler = s.handleSpam
		default:
			ierr = &iqError{code: 404, text: "unknown namespace"}
		}
		if handler != nil {
			result, ierr = handler(ctx, n)
		}
	}
	from := n.Attr("to")
	if from == "" {
		from = jid.ServerGateway
	}
	answer := stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"id": id, "type": "result", "from": from}}
	if ierr != nil {
		answer.Attrs["type"] = "error"
		answer.Content = []stanza.Node{{Tag: "error", Attrs: stanza.Attrs{"code": strconv.Itoa(ierr.code), "text": ierr.text}}}
	} else if len(result) > 0 {
		answer.Content = result
	}
	_ = s.write(answer)
}

// logFailure logs a gateway failure behind an iq and returns the 500 answer.
func (s *session) logFailure(err error, what string) *iqError {
	if s.ctx.Err() == nil {
		s.log.Err(err).Msg("Failed to " + what)
	}
	return internalError
}

// handleMediaConn answers media_conn (section 7) with the media package's hosts.
func (s *session) handleMediaConn(_ context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	if _, ok := n.Child("media_conn"); !ok || n.Attr("type") != "set" {
		return nil, badRequest("expected <media_conn/> in a set iq")
	}
	if s.g.cfg.MediaConn == nil {
		return nil, &iqError{code: 503, text: "media hosts unavailable"}
	}
	auth, ttl, hosts := s.g.cfg.MediaConn(s.user())
	if auth == "" || len(hosts) == 0 || ttl < time.Second {
		return nil, &iqError{code: 503, text: "media hosts unavailable"}
	}
	children := make([]stanza.Node, 0, len(hosts))
	for _, h := range hosts {
		children = append(children, stanza.Node{Tag: "host", Attrs: stanza.Attrs{"hostname": h}})
	}
	return []stanza.Node{{Tag: "media_conn", Attrs: stanza.Attrs{
		"auth": auth, "ttl": strconv.FormatInt(int64(ttl.Seconds()), 10)}, Content: children}}, nil
}

// handleBlocklist blocks and unblocks users (section 8), and lists them on get.
func (s *session) handleBlocklist(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	if n.Attr("type") == "get" {
		list, err := s.g.st.Blocklist(ctx, s.user())
		if err != nil {
			return nil, s.logFailure(err, "read blocklist")
		}
		items := make([]stanza.Node, 0, len(list))
		for _, u := range list {
			items = append(items, stanza.Node{Tag: "item", Attrs: stanza.Attrs{"jid": u.String()}})
		}
		return []stanza.Node{{Tag: "list", Content: items}}, nil
	}
	items := n.ChildrenByTag("item")
	if len(items) == 0 {
		return nil, badRequest("no <item>")
	}
	type change struct {
		user  jid.JID
		block bool
	}
	changes := make([]change, 0, len(items))
	for _, it := range items {
		u, err := jid.Parse(it.Attr("jid"))
		if err != nil || u.User == "" || u.IsGroup() {
			return nil, badRequest("item jid is not a user")
		}
		switch it.Attr("action") {
		case "block":
			changes = append(changes, change{u.ToUser(), true})
		case "unblock":
			changes = append(changes, change{u.ToUser(), false})
		default:
			return nil, badRequest("item action must be block or unblock")
		}
	}
	for _, c := range changes {
		if err := s.g.st.SetBlocked(ctx, s.user(), c.user, c.block); err != nil {
			return nil, s.logFailure(err, "change blocklist")
		}
	}
	return nil, nil
}

// handleSpam records spam reports (section 8). Reports from enough distinct users
// restrict the reported user for Limits.RestrictionLength.
func (s *session) handleSpam(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	list, ok := n.Child("spam_list")
	if !ok || n.Attr("type") != "set" {
		return nil, badRequest("expected <spam_list> in a set iq")
	}
	msgs := list.ChildrenByTag("message")
	if len(msgs) == 0 {
		return nil, badRequest("no <message> in <spam_list>")
	}
	type report struct {
		sender jid.JID
		id     string
	}
	reports := make([]report, 0, len(msgs))
	for _, m := range msgs {
		from, err := jid.Parse(m.Attr("from"))
		if err != nil || from.User == "" || m.Attr("id") == "" || !m.HasAttr("t") {
			return nil, badRequest("a reported message needs id, from and t")
		}
		sender := from
		if from.IsGroup() {
			if sender, err = jid.Parse(m.Attr("participant")); err != nil || sender.User == "" || sender.IsGroup() {
				// A group report without the sender names nobody to restrict.
				continue
			}
		}
		if sender.ToUser() == s.user() {
			continue
		}
		reports = append(reports, report{sender.ToUser(), m.Attr("id")})
	}
	for _, r := range reports {
		if err := s.g.Report(ctx, s.user(), r.sender, r.id); err != nil {
			return nil, s.logFailure(err, "store report")
		}
	}
	return nil, nil
}

// Report records that reporter reported a message of reported as spam, as the spam iq
// does (section 8). Reports of unknown users are ignored; reports from
// Limits.ReportsBeforeRestriction distinct users restrict reported for
// Limits.RestrictionLength.
func (g *Gateway) Report(ctx context.Context, reporter, reported jid.JID, messageID string) error {
	known, err := g.st.KnownUser(ctx, reported)
	if err != nil || !known {
		return err
	}
	count, err := g.st.AddReport(ctx, reported, reporter, messageID, g.now())
	if err != nil {
		return err
	}
	if count >= g.cfg.Limits.ReportsBeforeRestriction {
		return g.restrictForSpam(ctx, reported)
	}
	return nil
}

// restrictForSpam restricts a user after enough reports and starts its count over.
func (g *Gateway) restrictForSpam(ctx context.Context, user jid.JID) error {
	until := g.now().Add(g.cfg.Limits.RestrictionLength)
	if err := g.st.ClearReports(ctx, user); err != nil {
		return err
	}
	g.log.Info().Stringer("user", user).Time("until", until).Msg("Restricting after spam reports")
	return g.Restrict(ctx, user, "spam", until)
}

// childBytes returns the bytes of a child that must be exactly size bytes long.
func childBytes(parent stanza.Node, tag string, size int) ([]byte, bool) {
	child, ok := parent.Child(tag)
	if !ok || child.Children() != nil {
		return nil, false
	}
	b, err := child.Bytes()
	if err != nil || len(b) != size {
		return nil, false
	}
	return b, true
}

// validBase64 reports whether an element holds non-empty standard base64 text.
func validBase64(n stanza.Node) bool {
	if n.Children() != nil {
		return false
	}
	if b, ok := n.Content.([]byte); ok {
		return len(b) > 0
	}
	text := n.Text()
	if text == "" {
		return false
	}
	_, err := base64.StdEncoding.DecodeString(text)
	return err == nil
}

var errNotFound = gwstore.ErrNotFound

func isNotFound(err error) bool { return errors.Is(err, errNotFound) }
