package gateway

import (
	"context"
	"strconv"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// Content types of section 3.3.
var (
	allowedTypes      = map[string]bool{"text": true, "media": true, "reaction": true}
	allowedMediaTypes = map[string]bool{"image": true, "video": true, "ptt": true, "audio": true, "document": true}
)

// refusal is a refused message: <ack class="message" id error [reason] [retry_after]/>.
type refusal struct {
	code       int
	reason     string
	retryAfter time.Duration
}

func refuse(code int) *refusal { return &refusal{code: code} }

// sentMessage is a parsed <message> from an endpoint.
type sentMessage struct {
	id, typ, edit string
	to            jid.JID
	phash         string
	hasPHash      bool
	// parts are the per-device encs of <participants>, in order.
	parts map[jid.JID]stanza.Node
	order []jid.JID
	// skmsg is the group's one <enc type="skmsg">, if any.
	skmsg *stanza.Node
}

// handleMessage accepts or refuses a message (sections 3.3, 8, 10) and acks it.
func (s *session) handleMessage(ctx context.Context, n stanza.Node) {
	id := n.Attr("id")
	now := s.g.now()
	ref := s.acceptMessage(ctx, n, now)
	ack := stanza.Node{Tag: "ack", Attrs: stanza.Attrs{"class": "message", "id": id}}
	if ref != nil {
		ack.Attrs["error"] = strconv.Itoa(ref.code)
		if ref.reason != "" {
			ack.Attrs["reason"] = ref.reason
		}
		if ref.retryAfter > 0 {
			ack.Attrs["retry_after"] = strconv.FormatInt(retryAfterSeconds(ref.retryAfter), 10)
		}
		s.log.Debug().Str("message_id", id).Int("code", ref.code).Str("reason", ref.reason).Msg("Refused message")
	} else {
		ack.Attrs["t"] = strconv.FormatInt(now.Unix(), 10)
	}
	_ = s.write(ack)
}

// acceptMessage runs every check in the order a refusal is decided, then queues the
// deliveries. nil means accepted.
func (s *session) acceptMessage(ctx context.Context, n stanza.Node, now time.Time) *refusal {
	if n.Attr("id") == "" {
		return refuse(400)
	}
	if r, ok := s.g.faults.takeRefusal(s.endpoint); ok {
		return &refusal{code: r.Code, reason: r.Reason}
	}
	msg, ref := parseMessage(n)
	if ref != nil {
		return ref
	}
	restricted, err := s.g.restriction(ctx, s.user())
	if err != nil {
		return s.failed(err, "check restriction")
	} else if restricted != nil {
		return &refusal{code: 403, reason: errcode.ReasonRestricted}
	}
	if ok, err := s.g.st.HasKeys(ctx, s.endpoint); err != nil {
		return s.failed(err, "check keys")
	} else if !ok {
		return refuse(412)
	}
	if msg.to.IsGroup() {
		return s.acceptGroupMessage(ctx, msg, now)
	}
	return s.acceptDirectMessage(ctx, msg, now)
}

func (s *session) failed(err error, what string) *refusal {
	if s.ctx.Err() == nil {
		s.log.Err(err).Msg("Failed to " + what)
	}
	return refuse(500)
}

// parseMessage checks a message's structure and content type without decrypting.
func parseMessage(n stanza.Node) (*sentMessage, *refusal) {
	rawTo := n.Attr("to")
	if rawTo == "status@broadcast" {
		return nil, refuse(406)
	}
	to, err := jid.Parse(rawTo)
	if err != nil || to.User == "" {
		return nil, refuse(400)
	}
	msg := &sentMessage{id: n.Attr("id"), typ: n.Attr("type"), edit: n.Attr("edit"), to: to, parts: map[jid.JID]stanza.Node{}}
	msg.phash, msg.hasPHash = n.Attrs["phash"]
	if msg.typ == "" {
		return nil, refuse(400)
	}
	if !allowedTypes[msg.typ] {
		// sticker, poll, view-once, status and anything else this protocol lacks.
		return nil, refuse(406)
	}
	checkEnc := func(enc stanza.Node) *refusal {
		if isViewOnce(enc) {
			return refuse(406)
		}
		if mt, ok := enc.Attrs["mediatype"]; ok && !allowedMediaTypes[mt] {
			return refuse(406)
		}
		if msg.typ == "media" && !enc.HasAttr("mediatype") {
			return refuse(400)
		}
		if !validBase64(enc) {
			return refuse(400)
		}
		return nil
	}
	for _, child := range n.Children() {
		switch child.Tag {
		case "participants":
			for _, to := range child.ChildrenByTag("to") {
				dev, err := jid.Parse(to.Attr("jid"))
				if err != nil || dev.User == "" || dev.IsGroup() {
					return nil, refuse(400)
				}
				encs := to.ChildrenByTag("enc")
				if len(encs) != 1 {
					return nil, refuse(400)
				}
				if t := encs[0].Attr("type"); t != signal.TypePreKeyMessage && t != signal.TypeMessage {
					return nil, refuse(400)
				}
				if r := checkEnc(encs[0]); r != nil {
					return nil, r
				}
				if _, dup := msg.parts[dev]; dup {
					return nil, refuse(400)
				}
				msg.parts[dev] = encs[0]
				msg.order = append(msg.order, dev)
			}
		case "enc":
			if child.Attr("type") != signal.TypeSenderKey || !to.IsGroup() || msg.skmsg != nil {
				return nil, refuse(400)
			}
			if r := checkEnc(child); r != nil {
				return nil, r
			}
			enc := child
			msg.skmsg = &enc
		}
		if isViewOnce(child) {
			return nil, refuse(406)
		}
	}
	if len(msg.parts) == 0 && msg.skmsg == nil {
		return nil, refuse(400)
	}
	return msg, nil
}

// isViewOnce spots WhatsApp's view-once markers, which interop does not carry.
func isViewOnce(n stanza.Node) bool {
	return n.Tag == "view_once" || n.Tag == "viewonce" || n.Attr("view_once") == "true" ||
		n.Attr("view_once") == "1" || n.Attr("viewonce") == "true" || n.Attr("viewonce") == "1"
}

// checkRates applies the rate limits of section 8 to a third-party sender: 30 per
// 10 s and 1,000 per hour, and for a message to a Meta user who never wrote to it,
// 50 new conversations per 24 h. newConv says whether this send starts one.
func (s *session) checkRates(ctx context.Context, peer jid.JID, now time.Time) (newConv bool, ref *refusal) {
	if !s.thirdParty {
		return false, nil
	}
	l := s.g.cfg.Limits
	if wait := s.g.rates.check(s.user(), now, window{l.BurstMessages, l.BurstWindow},
		window{l.HourlyMessages, l.HourlyWindow}); wait > 0 {
		return false, &refusal{code: 429, retryAfter: wait}
	}
	if peer.IsEmpty() || peer.IsInterop() {
		return false, nil
	}
	wrote, err := s.g.st.HasWritten(ctx, peer, s.user())
	if err != nil {
		return false, s.failed(err, "check contact")
	} else if wrote {
		return false, nil
	}
	started, count, oldest, err := s.g.st.ConversationStats(ctx, s.user(), peer, now.Add(-l.ConversationWindow))
	if err != nil {
		return false, s.failed(err, "count conversations")
	}
	if started {
		return false, nil
	}
	if count >= l.NewConversations {
		return false, &refusal{code: 429, retryAfter: oldest.Add(l.ConversationWindow).Sub(now)}
	}
	return true, nil
}

// acceptDirectMessage routes a 1:1 message to the recipient's devices.
func (s *session) acceptDirectMessage(ctx context.Context, msg *sentMessage, now time.Time) *refusal {
	peer := msg.to.ToUser()
	if peer.Server != s.g.cfg.Server && !peer.IsInterop() {
		return refuse(404)
	}
	known, err := s.g.st.KnownUser(ctx, peer)
	if err != nil {
		return s.failed(err, "look up recipient")
	} else if !known {
		return refuse(404)
	}
	if s.thirdParty && peer.IsInterop() {
		// The gateway connects providers with Meta users, not providers with each other
		// (they meet only in groups).
		return refuse(403)
	}
	if ok, err := s.g.reachable(ctx, s.user(), peer); err != nil {
		return s.failed(err, "check opt-in")
	} else if !ok {
		return &refusal{code: 403, reason: errcode.ReasonOptIn}
	}
	newConv, ref := s.checkRates(ctx, peer, now)
	if ref != nil {
		return ref
	}
	devices, err := s.g.st.KeyedDevices(ctx, peer)
	if err != nil {
		return s.failed(err, "list devices")
	}
	devices = without(devices, s.endpoint)
	targets, ref := matchParts(msg, devices, func(d jid.JID) bool { return d.ToUser() == peer })
	if ref != nil {
		return ref
	}
	if msg.skmsg != nil {
		return refuse(400)
	}
	blocked, err := s.g.st.IsBlocked(ctx, peer, s.user())
	if err != nil {
		return s.failed(err, "check blocklist")
	}
	if !blocked {
		base := stanza.Attrs{"from": s.endpoint.String(), "id": msg.id, "t": strconv.FormatInt(now.Unix(), 10), "type": msg.typ}
		if msg.edit != "" {
			base["edit"] = msg.edit
		}
		for _, d := range targets {
			enc, ok := msg.parts[d]
			if !ok {
				// The sender had no keys for this device (section 5: it is left out).
				continue
			}
			out := stanza.Node{Tag: "message", Attrs: copyAttrs(base), Content: []stanza.Node{enc}}
			if err := s.g.deliver(ctx, d, out); err != nil {
				return s.failed(err, "queue message")
			}
		}
		if err := s.g.st.AddContact(ctx, s.user(), peer, now); err != nil {
			return s.failed(err, "record contact")
		}
	} else {
		// Accepted as usual and never delivered, so no delivery receipt comes back.
		s.log.Debug().Str("message_id", msg.id).Msg("Recipient blocked the sender; dropping silently")
	}
	if s.thirdParty {
		s.g.rates.record(s.user(), now)
		if newConv {
			if err := s.g.st.StartConversation(ctx, s.user(), peer, now); err != nil {
				s.log.Err(err).Msg("Failed to record new conversation")
			}
		}
	}
	return nil
}

// matchParts checks phash and returns the devices to deliver to. With phash (a new
// message) it must match the gateway's device list (409 otherwise) and every enc must
// go to a listed device. Without phash (a retry resend, section 3.5) only the named
// devices get it: each must belong to the chat (owns), and ones no longer listed are
// skipped.
func matchParts(msg *sentMessage, devices []jid.JID, owns func(jid.JID) bool) ([]jid.JID, *refusal) {
	listed := make(map[jid.JID]bool, len(devices))
	for _, d := range devices {
		listed[d] = true
	}
	if msg.hasPHash {
		if msg.phash != signal.ParticipantHash(devices) {
			return nil, refuse(409)
		}
		for _, d := range msg.order {
			if !listed[d] {
				return nil, refuse(400)
			}
		}
		return devices, nil
	}
	if len(msg.order) == 0 {
		return nil, refuse(400)
	}
	var out []jid.JID
	for _, d := range msg.order {
		if !owns(d) {
			return nil, refuse(400)
		}
		if listed[d] {
			out = append(out, d)
		}
	}
	return out, nil
}

// acceptGroupMessage routes a group message: the skmsg to every member device the
// sender may reach (its own devices excepted), each with its own pkmsg/msg if any.
func (s *session) acceptGroupMessage(ctx context.Context, msg *sentMessage, now time.Time) *refusal {
	group, err := s.g.st.GetGroup(ctx, msg.to)
	if isNotFound(err) {
		return refuse(404)
	} else if err != nil {
		return s.failed(err, "look up group")
	}
	if _, member := group.Member(s.user()); !member {
		return refuse(403)
	}
	if _, ref := s.checkRates(ctx, jid.JID{}, now); ref != nil {
		return ref
	}
	devices, err := s.groupDevices(ctx, group)
	if err != nil {
		return s.failed(err, "list group devices")
	}
	targets, ref := matchParts(msg, devices, func(d jid.JID) bool {
		_, ok := group.Member(d)
		return ok && d.ToUser() != s.user()
	})
	if ref != nil {
		return ref
	}
	base := stanza.Attrs{"from": group.JID.String(), "participant": s.endpoint.String(), "id": msg.id,
		"t": strconv.FormatInt(now.Unix(), 10), "type": msg.typ}
	if msg.edit != "" {
		base["edit"] = msg.edit
	}
	for _, d := range targets {
		var content []stanza.Node
		if enc, ok := msg.parts[d]; ok {
			// The sender key distribution comes first, so the skmsg can be decrypted.
			content = append(content, enc)
		}
		if msg.skmsg != nil {
			content = append(content, *msg.skmsg)
		}
		if len(content) == 0 {
			continue
		}
		out := stanza.Node{Tag: "message", Attrs: copyAttrs(base), Content: content}
		if err := s.g.deliver(ctx, d, out); err != nil {
			return s.failed(err, "queue message")
		}
	}
	if s.thirdParty {
		s.g.rates.record(s.user(), now)
	}
	return nil
}

// groupDevices is the device list a group message is checked against: every keyed
// device of every member the sender may reach, except the sender's own devices.
func (s *session) groupDevices(ctx context.Context, group *gwstore.Group) ([]jid.JID, error) {
	var out []jid.JID
	for _, m := range group.Members {
		if m.User == s.user() {
			continue
		}
		ok, err := s.g.reachable(ctx, s.user(), m.User)
		if err != nil {
			return nil, err
		} else if !ok {
			continue
		}
		devs, err := s.g.st.KeyedDevices(ctx, m.User)
		if err != nil {
			return nil, err
		}
		out = append(out, devs...)
	}
	return out, nil
}

func without(devices []jid.JID, skip jid.JID) []jid.JID {
	out := devices[:0:0]
	for _, d := range devices {
		if d != skip {
			out = append(out, d)
		}
	}
	return out
}

func copyAttrs(a stanza.Attrs) stanza.Attrs {
	out := make(stanza.Attrs, len(a))
	for k, v := range a {
		out[k] = v
	}
	return out
}
