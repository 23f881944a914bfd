package gateway

import (
	"context"
	"strconv"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// notification builds <notification id type from t>children</notification>.
func (g *Gateway) notification(typ, from string, extra stanza.Attrs, children ...stanza.Node) stanza.Node {
	attrs := stanza.Attrs{"id": interop.NewID(), "type": typ, "from": from, "t": strconv.FormatInt(g.now().Unix(), 10)}
	for k, v := range extra {
		attrs[k] = v
	}
	n := stanza.Node{Tag: "notification", Attrs: attrs}
	if len(children) > 0 {
		n.Content = children
	}
	return n
}

// deliverAll queues n for every endpoint of users, except the skipped endpoint.
func (g *Gateway) deliverAll(ctx context.Context, users []jid.JID, n stanza.Node, skip jid.JID) {
	for _, u := range users {
		endpoints, err := g.endpointsOf(ctx, u)
		if err != nil {
			g.log.Err(err).Msg("Failed to list endpoints")
			continue
		}
		for _, e := range endpoints {
			if e == skip {
				continue
			}
			if err := g.deliver(ctx, e, n); err != nil {
				g.log.Err(err).Stringer("endpoint", e).Msg("Failed to queue notification")
			}
		}
	}
}

// audience lists the users who must hear about a user's keys and devices: those it
// wrote to or got messages from, and its co-members in groups.
func (g *Gateway) audience(ctx context.Context, user jid.JID) []jid.JID {
	contacts, err := g.st.Contacts(ctx, user)
	if err != nil {
		g.log.Err(err).Msg("Failed to list contacts")
	}
	co, err := g.st.CoMembers(ctx, user)
	if err != nil {
		g.log.Err(err).Msg("Failed to list co-members")
	}
	seen := make(map[jid.JID]bool)
	var out []jid.JID
	for _, u := range append(contacts, co...) {
		if u != user.ToUser() && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// announceDevices tells a user's audience that one of its devices joined or left its
// device list (section 5): <notification type="devices" from={user}><add|remove>
// <device jid/></…></notification>.
func (g *Gateway) announceDevices(ctx context.Context, user jid.JID, action string, device jid.JID) {
	n := g.notification("devices", user.ToUser().String(), nil, stanza.Node{Tag: action, Content: []stanza.Node{
		{Tag: "device", Attrs: stanza.Attrs{"jid": device.String()}}}})
	g.deliverAll(ctx, g.audience(ctx, user), n, jid.JID{})
}

// announceIdentity tells a user's audience that its identity key changed (section 5).
func (g *Gateway) announceIdentity(ctx context.Context, user jid.JID) {
	n := g.notification("encrypt", user.ToUser().String(), nil, stanza.Node{Tag: "identity"})
	g.deliverAll(ctx, g.audience(ctx, user), n, jid.JID{})
}

// notifyPreKeysLow tells a device that it holds few one-time prekeys (section 5).
func (g *Gateway) notifyPreKeysLow(ctx context.Context, device jid.JID, count int) {
	n := g.notification("encrypt", jid.ServerGateway, nil, stanza.Node{Tag: "count",
		Attrs: stanza.Attrs{"value": strconv.Itoa(count)}})
	if err := g.deliver(ctx, device, n); err != nil {
		g.log.Err(err).Msg("Failed to queue prekey notification")
	}
}

// notifyRestriction tells a restricted user's endpoints until when they may not send
// (section 8).
func (g *Gateway) notifyRestriction(ctx context.Context, user jid.JID, reason string, until time.Time) {
	n := g.notification("account_sync", jid.ServerGateway, nil, stanza.Node{Tag: "restriction", Attrs: stanza.Attrs{
		"reason": reason, "until": strconv.FormatInt(until.Unix(), 10)}})
	g.deliverAll(ctx, []jid.JID{user}, n, jid.JID{})
}
