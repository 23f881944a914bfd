package gateway

import (
	"context"
	"errors"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// handleReceipt routes a receipt (section 3.5). Receipts are fire and forget for the
// sender: one the gateway will not deliver (unknown target, blocked, read receipts
// off on either side) is dropped silently, as WhatsApp does.
func (s *session) handleReceipt(ctx context.Context, n stanza.Node) {
	to, err := jid.Parse(n.Attr("to"))
	if err != nil || to.User == "" || n.Attr("id") == "" {
		s.log.Debug().Msg("Dropping receipt without a valid to or id")
		return
	}
	typ := n.Attr("type")
	switch typ {
	case "", "read", "played", "retry", "read-self", "played-self", "sender", "inactive":
	default:
		s.log.Debug().Str("receipt_type", typ).Msg("Dropping receipt of unknown type")
		return
	}
	// The receipt goes back to the original sender: in 1:1 the chat itself, in a
	// group the participant.
	target, attrs := to, stanza.Attrs{"from": s.endpoint.String()}
	if to.IsGroup() {
		p, err := jid.Parse(n.Attr("participant"))
		if err != nil || p.User == "" || p.IsGroup() {
			return
		}
		group, err := s.g.st.GetGroup(ctx, to)
		if err != nil {
			if !errors.Is(err, gwstore.ErrNotFound) {
				s.log.Err(err).Msg("Failed to look up group")
			}
			return
		}
		if _, ok := group.Member(s.user()); !ok {
			return
		}
		target = p
		attrs = stanza.Attrs{"from": to.String(), "participant": s.endpoint.String()}
	}
	for _, k := range []string{"id", "type", "t"} {
		if v, ok := n.Attrs[k]; ok {
			attrs[k] = v
		}
	}
	ok, err := s.mayDeliver(ctx, target.ToUser(), typ == "read" || typ == "played")
	if err != nil {
		s.log.Err(err).Msg("Failed to check receipt")
		return
	} else if !ok {
		return
	}
	var endpoints []jid.JID
	if typ == "retry" {
		// Only the device that sent the message holds the copy to encrypt again.
		if !target.IsInterop() {
			if ok, err := s.g.st.DeviceExists(ctx, target); err != nil || !ok {
				return
			}
		}
		endpoints = []jid.JID{target}
	} else if endpoints, err = s.g.endpointsOf(ctx, target); err != nil {
		s.log.Err(err).Msg("Failed to list endpoints")
		return
	}
	out := stanza.Node{Tag: "receipt", Attrs: attrs}
	if children := n.Children(); len(children) > 0 {
		out.Content = children
	}
	for _, e := range endpoints {
		if e == s.endpoint {
			continue
		}
		if err := s.g.deliver(ctx, e, out); err != nil {
			s.log.Err(err).Msg("Failed to queue receipt")
		}
	}
}

// mayDeliver says whether a receipt or chatstate from this endpoint may reach target:
// a known user it may reach that has not blocked it, and for read receipts both sides
// share them.
func (s *session) mayDeliver(ctx context.Context, target jid.JID, isRead bool) (bool, error) {
	if target == s.user() {
		return false, nil
	}
	known, err := s.g.st.KnownUser(ctx, target)
	if err != nil || !known {
		return false, err
	}
	if ok, err := s.g.reachable(ctx, s.user(), target); err != nil || !ok {
		return false, err
	}
	if blocked, err := s.g.st.IsBlocked(ctx, target, s.user()); err != nil || blocked {
		return false, err
	}
	if !isRead {
		return true, nil
	}
	mine, err := s.g.readReceiptsOf(ctx, s.user(), s)
	if err != nil || !mine {
		return false, err
	}
	return s.g.readReceiptsOf(ctx, target, nil)
}

// readReceiptsOf tells whether a user shares read receipts: a third-party account by
// enableReadReceipts of its connection (the live one, else the last one), a Meta user
// by its options.
func (g *Gateway) readReceiptsOf(ctx context.Context, user jid.JID, current *session) (bool, error) {
	if user.IsInterop() {
		if current != nil && current.user() == user {
			return current.readReceipts, nil
		}
		if live := g.live(user); live != nil {
			return live.readReceipts, nil
		}
		a, err := g.st.GetAccount(ctx, user)
		if err != nil {
			return false, err
		}
		return a.ReadReceipts, nil
	}
	u, err := g.st.GetUser(ctx, user)
	if err != nil {
		return false, err
	}
	return u.ReadReceipts, nil
}

// handleChatState forwards a chatstate (section 3.6) to the live endpoints of the
// chat, never stored and never acked.
func (s *session) handleChatState(ctx context.Context, n stanza.Node) {
	to, err := jid.Parse(n.Attr("to"))
	if err != nil || to.User == "" {
		return
	}
	children := n.Children()
	if len(children) != 1 || (children[0].Tag != "composing" && children[0].Tag != "paused") {
		return
	}
	state := stanza.Node{Tag: children[0].Tag}
	if children[0].Tag == "composing" && children[0].Attr("media") == "audio" {
		state.Attrs = stanza.Attrs{"media": "audio"}
	}
	var users []jid.JID
	attrs := stanza.Attrs{"from": s.user().String()}
	if to.IsGroup() {
		group, err := s.g.st.GetGroup(ctx, to)
		if err != nil {
			return
		}
		if _, ok := group.Member(s.user()); !ok {
			return
		}
		attrs = stanza.Attrs{"from": to.String(), "participant": s.user().String()}
		for _, m := range group.Members {
			if ok, _ := s.mayDeliver(ctx, m.User, false); ok {
				users = append(users, m.User)
			}
		}
	} else if ok, _ := s.mayDeliver(ctx, to.ToUser(), false); ok {
		users = []jid.JID{to.ToUser()}
	}
	out := stanza.Node{Tag: "chatstate", Attrs: attrs, Content: []stanza.Node{state}}
	for _, u := range users {
		endpoints, err := s.g.endpointsOf(ctx, u)
		if err != nil {
			continue
		}
		s.g.sendLive(endpoints, out)
	}
}
