package connector

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

var (
	_ bridgev2.ReadReceiptHandlingNetworkAPI = (*InteropClient)(nil)
)

// handleReceipt bridges a Meta user's delivery or read receipt for messages this
// login sent, then acks it. Receipts are not stored in the outbox: losing one in a
// crash between the queueing and the ack only means the gateway delivers it again.
func (ic *InteropClient) handleReceipt(ctx context.Context, node stanza.Node) {
	defer ic.ack(ctx, node)
	evt, err := ic.receiptEvent(node)
	if evt == nil {
		ic.queueBestEffort(ctx, zerolog.WarnLevel, "receipt", nil, err)
		return
	}
	ic.queueBestEffort(ctx, zerolog.WarnLevel, "receipt", evt, err)
}

// queueBestEffort hands a receipt or chatstate to bridgev2; these are never retried,
// so a parse error or a failed handling is only logged (at level), never content.
func (ic *InteropClient) queueBestEffort(ctx context.Context, level zerolog.Level, what string, evt bridgev2.RemoteEvent, err error) {
	log := zerolog.Ctx(ctx)
	if err != nil {
		log.WithLevel(level).Err(err).Msg("Ignoring a " + what)
		return
	}
	if evt == nil {
		return
	}
	if res := ic.queueRemoteEvent(evt); !res.Success && !res.Ignored {
		log.WithLevel(level).Err(res.Error).Msg("bridgev2 failed to handle a " + what)
	}
}

// receiptEvent is the remote event of a receipt, nil for those not bridged (types
// this bridge does not show, our own in a group). In a group the receipt is the
// reading member's, shown by their ghost.
func (ic *InteropClient) receiptEvent(node stanza.Node) (*simplevent.Receipt, error) {
	r, err := interop.ParseReceipt(node)
	if err != nil {
		return nil, fmt.Errorf("failed to parse receipt: %w", err)
	}
	chat := r.Chat.ToUser()
	sender := bridgev2.EventSender{Sender: ids.MakeUserID(chat)}
	if chat.IsGroup() {
		// The participant is the member who read; the ids are this login's messages.
		if r.Participant.IsEmpty() {
			return nil, fmt.Errorf("group receipt without participant")
		}
		if r.Participant.ToUser() == ic.Account.ToUser() {
			return nil, nil
		}
		sender = ic.groupSender(r.Participant)
	} else if !r.Participant.IsEmpty() {
		return nil, nil
	}
	var typ bridgev2.RemoteEventType
	switch r.Type {
	case interop.ReceiptDelivered:
		typ = bridgev2.RemoteEventDeliveryReceipt
	case interop.ReceiptRead, interop.ReceiptPlayed:
		// Matrix has no "played": hearing a voice note means having read it.
		typ = bridgev2.RemoteEventReadReceipt
	default:
		return nil, nil
	}
	targets := make([]networkid.MessageID, 0, len(r.IDs))
	for _, id := range r.IDs {
		targets = append(targets, ids.MakeMessageID(chat, ic.Account, id))
	}
	ts := r.T
	if ts.IsZero() {
		ts = time.Now()
	}
	evt := &simplevent.Receipt{
		EventMeta: simplevent.EventMeta{
			Type:      typ,
			PortalKey: ids.MakePortalKey(chat, ic.UserLogin.ID),
			Sender:    sender,
			Timestamp: ts,
		},
		Targets: targets,
	}
	if typ == bridgev2.RemoteEventReadReceipt {
		// The first id is the receipt's own; the list holds older ones.
		evt.LastTarget = targets[0]
		if !r.T.IsZero() {
			evt.ReadUpTo = r.T
		}
	}
	return evt, nil
}

// HandleMatrixReadReceipt tells the Meta user which of their messages the Matrix user
// read, when read receipts are enabled: every message of theirs after the previous
// receipt up to the one read.
func (ic *InteropClient) HandleMatrixReadReceipt(ctx context.Context, msg *bridgev2.MatrixReadReceipt) error {
	if !ic.Main.Config.EnableReadReceipts {
		return nil
	}
	acc := ic.account()
	if acc == nil {
		return fmt.Errorf("not connected")
	}
	chat, err := ids.ParsePortalID(msg.Portal.ID)
	if err != nil {
		return fmt.Errorf("failed to parse portal: %w", err)
	}
	var msgs []*database.Message
	if ic.Main.Bridge != nil && ic.Main.Bridge.DB != nil && !msg.ReadUpTo.IsZero() {
		msgs, err = ic.Main.Bridge.DB.Message.GetMessagesBetweenTimeQuery(ctx, msg.Portal.PortalKey, msg.LastRead, msg.ReadUpTo)
		if err != nil {
			return fmt.Errorf("failed to find the messages read: %w", err)
		}
	}
	if msg.ExactMessage != nil {
		msgs = append(msgs, msg.ExactMessage)
	}
	ts := msg.ReadUpTo
	if ts.IsZero() {
		ts = time.Now()
	}
	var receipts []interop.Receipt
	if chat.IsGroup() {
		receipts = groupReadReceipts(chat.ToUser(), ic.Account, msgs, ts)
	} else if stanzaIDs := unreadStanzaIDs(chat.ToUser().String(), msgs); len(stanzaIDs) > 0 {
		receipts = []interop.Receipt{{Chat: chat.ToUser(), IDs: stanzaIDs, Type: interop.ReceiptRead, T: ts}}
	}
	for _, r := range receipts {
		if err := acc.Client().SendReceipt(ctx, r); err != nil {
			return fmt.Errorf("failed to send read receipt: %w", err)
		}
		zerolog.Ctx(ctx).Debug().Int("count", len(r.IDs)).Msg("Sent read receipt")
	}
	return nil
}

// groupReadReceipts are the read receipts of a group for msgs: one per member who sent
// any of them (not this login's own account), naming that member as participant, in
// the order of each sender's newest message.
func groupReadReceipts(group, own jid.JID, msgs []*database.Message, ts time.Time) []interop.Receipt {
	var senders []string
	seen := map[string]bool{}
	for i := len(msgs) - 1; i >= 0; i-- {
		key, err := ids.ParseMessageID(msgs[i].ID)
		if err != nil || key.Sender.ToUser() == own.ToUser() {
			continue
		}
		if s := key.Sender.ToUser().String(); !seen[s] {
			seen[s] = true
			senders = append(senders, s)
		}
	}
	var out []interop.Receipt
	for _, s := range senders {
		stanzaIDs := unreadStanzaIDs(s, msgs)
		sender, err := jid.Parse(s)
		if err != nil || len(stanzaIDs) == 0 {
			continue
		}
		out = append(out, interop.Receipt{Chat: group, Participant: sender, IDs: stanzaIDs, Type: interop.ReceiptRead, T: ts})
	}
	return out
}

// maxReadIDs bounds one read receipt: the first receipt in a portal covers its whole
// history, and telling the peer about the newest messages is what matters.
const maxReadIDs = 100

// unreadStanzaIDs are the stanza ids of the peer's messages among msgs, newest first
// (the receipt's own id is the message read), each once, at most maxReadIDs. The last
// of msgs is the one read when the receipt named it; the others are ordered by time.
func unreadStanzaIDs(peer string, msgs []*database.Message) []string {
	if len(msgs) > 1 {
		rest := msgs[:len(msgs)-1]
		sort.SliceStable(rest, func(i, j int) bool { return rest[i].Timestamp.Before(rest[j].Timestamp) })
	}
	seen := make(map[string]bool, len(msgs))
	var out []string
	for i := len(msgs) - 1; i >= 0 && len(out) < maxReadIDs; i-- {
		key, err := ids.ParseMessageID(msgs[i].ID)
		if err != nil || key.Sender.ToUser().String() != peer || seen[key.StanzaID] {
			continue
		}
		seen[key.StanzaID] = true
		out = append(out, key.StanzaID)
	}
	return out
}
