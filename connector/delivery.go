package connector

import (
	"context"

	"github.com/rs/zerolog"

	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// sendDeliveryReceipt tells the sender's devices that a message reached this
// account, as every WhatsApp device does once it has a message (PROTOCOL.md section
// 3.5, <receipt to id/>); without it the Meta user's app never shows the message as
// delivered. It is sent once the message is safe in the outbox. A message that did
// not decrypt gets none: its retry receipt asks for it again instead. Fire and
// forget: a lost receipt only leaves the message undelivered in the sender's app.
func (ic *InteropClient) sendDeliveryReceipt(ctx context.Context, in *bridgedb.Incoming) {
	if in == nil || in.Message == nil {
		return
	}
	log := zerolog.Ctx(ctx).With().Str("stanza_id", in.StanzaID).Logger()
	acc := ic.account()
	if acc == nil {
		return
	}
	r, err := deliveryReceipt(in)
	if err != nil {
		log.Warn().Err(err).Msg("Not sending a delivery receipt for an unreadable outbox row")
		return
	}
	if err := acc.Client().SendReceipt(ctx, r); err != nil {
		log.Debug().Err(err).Msg("Failed to send a delivery receipt")
	}
}

// deliveryReceipt is the receipt for one received message: to the sender in a 1:1
// chat, to the group with the sender as participant in a group.
func deliveryReceipt(in *bridgedb.Incoming) (interop.Receipt, error) {
	chat, err := jid.Parse(in.Chat)
	if err != nil {
		return interop.Receipt{}, err
	}
	r := interop.Receipt{Chat: chat.ToUser(), IDs: []string{in.StanzaID}, Type: interop.ReceiptDelivered}
	if in.IsGroup {
		sender, err := jid.Parse(in.Sender)
		if err != nil {
			return interop.Receipt{}, err
		}
		r.Chat, r.Participant = chat, sender
	}
	return r, nil
}
