package interop

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// ReceiptType is the type attribute of a receipt (PROTOCOL.md section 3.5).
type ReceiptType string

const (
	ReceiptDelivered ReceiptType = "" // no type attribute
	ReceiptRead      ReceiptType = "read"
	ReceiptPlayed    ReceiptType = "played"
	// ReceiptRetry asks the sender to encrypt again; the signal layer builds and
	// reads its body, this package only reports it.
	ReceiptRetry ReceiptType = "retry"
)

// Receipt is a receipt for one or more messages of one chat.
type Receipt struct {
	Chat        jid.JID // to when sending, from when received
	Participant jid.JID // the message's sender in a group
	IDs         []string
	Type        ReceiptType
	T           time.Time // required for read and played
}

// ChatStateKind is what a chatstate says.
type ChatStateKind string

const (
	ChatComposing ChatStateKind = "composing"
	// ChatRecording is <composing media="audio"/>: recording a voice note.
	ChatRecording ChatStateKind = "recording"
	ChatPaused    ChatStateKind = "paused"
)

// ChatState is a received chatstate.
type ChatState struct {
	From        jid.JID
	Participant jid.JID // in groups
	State       ChatStateKind
}

// SendReceipt sends a receipt (fire and forget).
func (c *Client) SendReceipt(ctx context.Context, r Receipt) error {
	n, err := BuildReceipt(r)
	if err != nil {
		return err
	}
	return c.SendNode(ctx, n)
}

// SendChatState tells to that this account is typing, recording or stopped.
func (c *Client) SendChatState(ctx context.Context, to jid.JID, state ChatStateKind) error {
	n, err := BuildChatState(to, state)
	if err != nil {
		return err
	}
	return c.SendNode(ctx, n)
}

// BuildReceipt makes <receipt to id [type] [t] [participant]>, with the ids after the
// first in <list><item id/>…</list>.
func BuildReceipt(r Receipt) (stanza.Node, error) {
	if r.Chat.IsEmpty() || len(r.IDs) == 0 {
		return stanza.Node{}, fmt.Errorf("a receipt needs a chat and at least one id")
	}
	for _, id := range r.IDs {
		if id == "" {
			return stanza.Node{}, fmt.Errorf("a receipt id is empty")
		}
	}
	attrs := stanza.Attrs{"to": r.Chat.String(), "id": r.IDs[0]}
	switch r.Type {
	case ReceiptDelivered:
	case ReceiptRead, ReceiptPlayed:
		if r.T.IsZero() {
			return stanza.Node{}, fmt.Errorf("a %s receipt needs t", r.Type)
		}
		attrs["type"] = string(r.Type)
		attrs["t"] = strconv.FormatInt(r.T.Unix(), 10)
	default:
		return stanza.Node{}, fmt.Errorf("cannot build a %q receipt here", r.Type)
	}
	if !r.Participant.IsEmpty() {
		attrs["participant"] = r.Participant.String()
	}
	n := stanza.Node{Tag: "receipt", Attrs: attrs}
	if len(r.IDs) > 1 {
		items := make([]stanza.Node, 0, len(r.IDs)-1)
		for _, id := range r.IDs[1:] {
			items = append(items, stanza.Node{Tag: "item", Attrs: stanza.Attrs{"id": id}})
		}
		n.Content = []stanza.Node{{Tag: "list", Content: items}}
	}
	return n, nil
}

// ParseReceipt reads a received receipt.
func ParseReceipt(n stanza.Node) (Receipt, error) {
	if n.Tag != "receipt" {
		return Receipt{}, fmt.Errorf("<%s> is not a receipt", n.Tag)
	}
	from, err := jid.Parse(n.Attr("from"))
	if err != nil {
		return Receipt{}, fmt.Errorf("malformed receipt: %w", err)
	}
	r := Receipt{Chat: from, Type: ReceiptType(n.Attr("type"))}
	if p := n.Attr("participant"); p != "" {
		if r.Participant, err = jid.Parse(p); err != nil {
			return Receipt{}, fmt.Errorf("malformed receipt: %w", err)
		}
	}
	if id := n.Attr("id"); id != "" {
		r.IDs = append(r.IDs, id)
	}
	if list, ok := n.Child("list"); ok {
		for _, item := range list.ChildrenByTag("item") {
			if id := item.Attr("id"); id != "" {
				r.IDs = append(r.IDs, id)
			}
		}
	}
	if len(r.IDs) == 0 {
		return Receipt{}, fmt.Errorf("malformed receipt: no id")
	}
	if n.HasAttr("t") {
		t, err := n.AttrInt("t")
		if err != nil {
			return Receipt{}, fmt.Errorf("malformed receipt: %w", err)
		}
		r.T = time.Unix(t, 0)
	}
	return r, nil
}

// BuildChatState makes <chatstate to><composing/></chatstate> and its variants.
func BuildChatState(to jid.JID, state ChatStateKind) (stanza.Node, error) {
	if to.IsEmpty() {
		return stanza.Node{}, fmt.Errorf("a chatstate needs a recipient")
	}
	var child stanza.Node
	switch state {
	case ChatComposing:
		child = stanza.Node{Tag: "composing"}
	case ChatRecording:
		child = stanza.Node{Tag: "composing", Attrs: stanza.Attrs{"media": "audio"}}
	case ChatPaused:
		child = stanza.Node{Tag: "paused"}
	default:
		return stanza.Node{}, fmt.Errorf("unknown chat state %q", state)
	}
	return stanza.Node{Tag: "chatstate", Attrs: stanza.Attrs{"to": to.String()}, Content: []stanza.Node{child}}, nil
}

// ParseChatState reads a received chatstate.
func ParseChatState(n stanza.Node) (ChatState, error) {
	if n.Tag != "chatstate" {
		return ChatState{}, fmt.Errorf("<%s> is not a chatstate", n.Tag)
	}
	from, err := jid.Parse(n.Attr("from"))
	if err != nil {
		return ChatState{}, fmt.Errorf("malformed chatstate: %w", err)
	}
	cs := ChatState{From: from}
	if p := n.Attr("participant"); p != "" {
		if cs.Participant, err = jid.Parse(p); err != nil {
			return ChatState{}, fmt.Errorf("malformed chatstate: %w", err)
		}
	}
	children := n.Children()
	if len(children) != 1 {
		return ChatState{}, fmt.Errorf("malformed chatstate: %d children, want 1", len(children))
	}
	switch child := children[0]; child.Tag {
	case "composing":
		cs.State = ChatComposing
		if child.Attr("media") == "audio" {
			cs.State = ChatRecording
		}
	case "paused":
		cs.State = ChatPaused
	default:
		return ChatState{}, fmt.Errorf("malformed chatstate: unknown state <%s>", child.Tag)
	}
	return cs, nil
}
