package interop

import (
	"context"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// MessageAck is the gateway's acceptance of a sent message.
type MessageAck struct {
	ID string
	// T is the gateway's timestamp (zero when it gave none).
	T time.Time
}

// SendNode writes one stanza without waiting for anything: receipts, chatstates and
// acks. Safe for concurrent use.
func (c *Client) SendNode(ctx context.Context, n stanza.Node) error {
	cn := c.current()
	if cn == nil {
		return ErrNotConnected
	}
	return cn.write(ctx, n)
}

// SendMessage sends a <message> (filling a missing id) and waits for its
// <ack class="message" id t/>. A refusal (<ack … error="CODE" [retry_after] [reason]/>)
// gives an *errcode.Error with RetryAfter and Reason set; retrying is the caller's
// job (see RetryDelay), with the same id so that the receiver deduplicates. No ack
// within Config.IQTimeout gives ErrAckTimeout and drops the connection.
func (c *Client) SendMessage(ctx context.Context, msg stanza.Node) (MessageAck, error) {
	if msg.Tag != "message" {
		return MessageAck{}, fmt.Errorf("SendMessage needs a <message>, got <%s>", msg.Tag)
	}
	cn := c.current()
	if cn == nil {
		return MessageAck{}, ErrNotConnected
	}
	msg.Attrs = withDefaultAttrs(msg.Attrs, "", "")
	id := msg.Attrs["id"]
	key := pendingKey{kind: answerMessageAck, id: id}
	ch, err := cn.expect(key)
	if err != nil {
		return MessageAck{}, err
	}
	if err := cn.write(ctx, msg); err != nil {
		cn.forget(key)
		return MessageAck{}, err
	}
	ack, err := cn.await(ctx, key, ch, c.cfg.IQTimeout, fmt.Errorf("%w (id %s)", ErrAckTimeout, id))
	if err != nil {
		return MessageAck{ID: id}, err
	}
	return parseMessageAck(id, ack)
}

func parseMessageAck(id string, ack stanza.Node) (MessageAck, error) {
	res := MessageAck{ID: id}
	if code, refused := ack.Attrs["error"]; refused {
		return res, errcode.Parse(code, ack.Attr("text"), ack.Attr("reason"), ack.Attr("retry_after"))
	}
	if ack.HasAttr("t") {
		t, err := ack.AttrInt("t")
		if err != nil {
			return res, fmt.Errorf("failed to read the message ack: %w", err)
		}
		res.T = time.Unix(t, 0)
	}
	return res, nil
}

// Ack acknowledges a delivered message, receipt or notification. Call it only after
// the stanza was durably handled: the gateway delivers unacked stanzas again on the
// next connection, and that is what makes delivery at-least-once.
func (c *Client) Ack(ctx context.Context, n stanza.Node) error {
	ack, err := BuildAck(n)
	if err != nil {
		return err
	}
	return c.SendNode(ctx, ack)
}

// AckWith is Ack with an explicit type attribute ("" for none).
func (c *Client) AckWith(ctx context.Context, n stanza.Node, ackType string) error {
	ack, err := BuildAckWith(n, ackType)
	if err != nil {
		return err
	}
	return c.SendNode(ctx, ack)
}

// BuildAck makes <ack class id to [participant] [type]/> for a received stanza
// (PROTOCOL.md section 3.2). The type of a receipt or notification is echoed, as
// WhatsApp does; messages are acked without one.
func BuildAck(n stanza.Node) (stanza.Node, error) {
	ackType := ""
	if n.Tag != "message" {
		ackType = n.Attr("type")
	}
	return BuildAckWith(n, ackType)
}

// BuildAckWith is BuildAck with an explicit type ("" for none).
func BuildAckWith(n stanza.Node, ackType string) (stanza.Node, error) {
	switch n.Tag {
	case "message", "receipt", "notification":
	default:
		return stanza.Node{}, fmt.Errorf("<%s> is not acked", n.Tag)
	}
	id, from := n.Attr("id"), n.Attr("from")
	if id == "" || from == "" {
		return stanza.Node{}, fmt.Errorf("cannot ack %s: it has no id or no from", n)
	}
	attrs := stanza.Attrs{"class": n.Tag, "id": id, "to": from}
	if p := n.Attr("participant"); p != "" {
		attrs["participant"] = p
	}
	if ackType != "" {
		attrs["type"] = ackType
	}
	return stanza.Node{Tag: "ack", Attrs: attrs}, nil
}
