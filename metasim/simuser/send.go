package simuser

import (
	"context"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// Sent is what Send did.
type Sent struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"` // the gateway's, from its ack
	// Devices the message was encrypted for (1:1) or addressed to (group).
	Devices []jid.JID `json:"devices"`
	// Media describes the uploaded blob of a media message.
	Media *SentMedia `json:"media,omitempty"`
	// Message is the content as sent.
	Message *waE2E.Message `json:"-"`
}

// Send sends content from a device (a user JID means its device 0) to a user or a
// group, encrypted with the device's Signal sessions, and returns once the gateway
// accepted it. Media is encrypted and uploaded to Meta's media hosts first.
// Refusals come back as errors wrapping the *errcode.Error of the gateway's ack
// (403 not opted in, 406 not supported, …).
func (m *Manager) Send(ctx context.Context, from, to jid.JID, c Content) (*Sent, error) {
	d, err := m.device(from)
	if err != nil {
		return nil, err
	}
	now := m.cfg.Now()
	var msg *waE2E.Message
	var sent Sent
	if c.Kind.isMedia() {
		msg, sent.Media, err = m.buildMedia(ctx, &c, now)
	} else {
		msg, err = c.buildNonMedia(from, to, now)
	}
	if err != nil {
		return nil, err
	}
	id := c.ID
	if id == "" {
		id = interop.NewID()
	}
	var res interop.SendResult
	if to.IsGroup() {
		var members []jid.JID
		if members, err = d.groupMembers(ctx, to); err == nil {
			res, err = d.acc.SendGroupMessage(ctx, to, members, id, msg, interop.SendOptions{})
		}
	} else {
		res, err = d.acc.SendMessage(ctx, to.ToUser(), id, msg, interop.SendOptions{})
	}
	if err != nil {
		if sent.Media != nil {
			// Nobody can refer to the blob of a message that was never accepted.
			_ = m.cfg.Media.Delete(ctx, sent.Media.DirectPath)
		}
		return nil, fmt.Errorf("failed to send %s: %w", c.Kind, err)
	}
	sent.ID, sent.Timestamp, sent.Devices, sent.Message = res.ID, res.Timestamp, res.Devices, msg
	return &sent, nil
}

// SendChatState tells to (a user or a group) that from is typing (composing),
// recording a voice note (recording) or stopped (paused).
func (m *Manager) SendChatState(ctx context.Context, from, to jid.JID, state interop.ChatStateKind) error {
	d, err := m.device(from)
	if err != nil {
		return err
	}
	if err := d.acc.Client().SendChatState(ctx, to, state); err != nil {
		return fmt.Errorf("failed to send chat state: %w", err)
	}
	return nil
}

// SendReceipt sends a read or played receipt (or a delivery receipt again) from a
// device for messages of chat; in a group, sender is the device or user that sent
// them.
func (m *Manager) SendReceipt(ctx context.Context, from, chat, sender jid.JID, typ interop.ReceiptType, ids ...string) error {
	d, err := m.device(from)
	if err != nil {
		return err
	}
	r := interop.Receipt{Chat: chat, IDs: ids, Type: typ, T: m.cfg.Now()}
	if chat.IsGroup() {
		r.Participant = sender
	} else {
		r.Chat = chat.ToUser()
	}
	if typ == interop.ReceiptDelivered {
		r.T = time.Time{}
	}
	if err := d.acc.Client().SendReceipt(ctx, r); err != nil {
		return fmt.Errorf("failed to send receipt: %w", err)
	}
	return nil
}

// Block blocks (or unblocks) target for from's user, through the blocklist iq of
// from's connection (section 8).
func (m *Manager) Block(ctx context.Context, from, target jid.JID, block bool) error {
	d, err := m.device(from)
	if err != nil {
		return err
	}
	if block {
		return d.acc.Client().Block(ctx, target.ToUser())
	}
	return d.acc.Client().Unblock(ctx, target.ToUser())
}

// ReportSpam reports messages through the spam iq of from's connection (section 8).
func (m *Manager) ReportSpam(ctx context.Context, from jid.JID, msgs []interop.SpamMessage) error {
	d, err := m.device(from)
	if err != nil {
		return err
	}
	return d.acc.Client().ReportSpam(ctx, msgs)
}
