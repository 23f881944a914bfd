package interop

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// SpamMessage names one reported message (PROTOCOL.md section 8).
type SpamMessage struct {
	ID   string
	From jid.JID // the chat: a user, or the group
	// Participant is the sender in a group (optional; an extension the gateway may
	// ignore).
	Participant jid.JID
	T           time.Time
}

// Block blocks a user.
func (c *Client) Block(ctx context.Context, user jid.JID) error {
	return c.setBlocked(ctx, user, "block")
}

// Unblock unblocks a user.
func (c *Client) Unblock(ctx context.Context, user jid.JID) error {
	return c.setBlocked(ctx, user, "unblock")
}

func (c *Client) setBlocked(ctx context.Context, user jid.JID, action string) error {
	iq, err := buildBlocklistIQ(user, action)
	if err != nil {
		return err
	}
	if _, err := c.SendIQ(ctx, iq); err != nil {
		return fmt.Errorf("failed to %s: %w", action, err)
	}
	return nil
}

// ReportSpam reports messages as spam.
func (c *Client) ReportSpam(ctx context.Context, msgs []SpamMessage) error {
	iq, err := buildSpamIQ(msgs)
	if err != nil {
		return err
	}
	if _, err := c.SendIQ(ctx, iq); err != nil {
		return fmt.Errorf("failed to report spam: %w", err)
	}
	return nil
}

func buildBlocklistIQ(user jid.JID, action string) (stanza.Node, error) {
	if user.User == "" || user.IsGroup() {
		return stanza.Node{}, fmt.Errorf("cannot %s %q: not a user", action, user)
	}
	return stanza.Node{
		Tag:   "iq",
		Attrs: stanza.Attrs{"type": "set", "xmlns": "blocklist", "to": jid.ServerGateway},
		Content: []stanza.Node{{Tag: "item", Attrs: stanza.Attrs{
			"action": action, "jid": user.ToUser().String(),
		}}},
	}, nil
}

func buildSpamIQ(msgs []SpamMessage) (stanza.Node, error) {
	if len(msgs) == 0 {
		return stanza.Node{}, fmt.Errorf("no messages to report")
	}
	list := make([]stanza.Node, 0, len(msgs))
	for _, m := range msgs {
		if m.ID == "" || m.From.IsEmpty() || m.T.IsZero() {
			return stanza.Node{}, fmt.Errorf("a reported message needs id, from and t")
		}
		attrs := stanza.Attrs{"id": m.ID, "from": m.From.String(), "t": strconv.FormatInt(m.T.Unix(), 10)}
		if !m.Participant.IsEmpty() {
			attrs["participant"] = m.Participant.String()
		}
		list = append(list, stanza.Node{Tag: "message", Attrs: attrs})
	}
	return stanza.Node{
		Tag:     "iq",
		Attrs:   stanza.Attrs{"type": "set", "xmlns": "spam", "to": jid.ServerGateway},
		Content: []stanza.Node{{Tag: "spam_list", Content: list}},
	}, nil
}
