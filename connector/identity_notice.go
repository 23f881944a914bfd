package connector

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// safetyNumberNotice is the text of the notice; contact is the ghost's name.
func safetyNumberNotice(contact string) string {
	return fmt.Sprintf("The safety number with %s changed. This can happen when they reinstall WhatsApp "+
		"or change phones; if you did not expect it, verify with them another way.", contact)
}

// handleSafetyNumberChanged tells the Matrix user in the 1:1 portal with the contact
// that the contact's identity key changed (PROTOCOL.md section 5). The Account already
// dropped the old sessions and trusted the new key; the notice is how the user learns
// of it, so they can check out of band. No portal is created for it: a chat the user
// never had has no safety number to compare.
func (ic *InteropClient) handleSafetyNumberChanged(ctx context.Context, e *interop.SafetyNumberChanged) {
	user := e.User.ToUser()
	log := zerolog.Ctx(ctx).With().Stringer("contact", user).Logger()
	br := ic.Main.Bridge
	if br == nil {
		return
	}
	key := ids.MakePortalKey(user, ic.UserLogin.ID)
	portal, err := br.GetExistingPortalByKey(ctx, key)
	if err != nil {
		log.Err(err).Msg("Failed to look up the portal for a safety number change")
		return
	} else if portal == nil || portal.MXID == "" {
		log.Debug().Msg("Safety number changed for a contact without a portal")
		return
	}
	name := ic.contactName(ctx, user)
	now := time.Now()
	// One notice per contact and second: the gateway's notification and the prekey
	// message that follows it report the same change, and bridgev2 drops a message
	// whose ID it already has.
	id := ids.MakeMessageID(user, user, "identity-"+strconv.FormatInt(now.Unix(), 10))
	res := ic.queueRemoteEvent(&simplevent.Message[string]{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventMessage,
			PortalKey: key,
			Sender:    bridgev2.EventSender{Sender: ids.MakeUserID(user)},
			Timestamp: now,
		},
		Data: safetyNumberNotice(name),
		ID:   id,
		ConvertMessageFunc: func(_ context.Context, _ *bridgev2.Portal, _ bridgev2.MatrixAPI, text string) (*bridgev2.ConvertedMessage, error) {
			return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
				Type:    event.EventMessage,
				Content: &event.MessageEventContent{MsgType: event.MsgNotice, Body: text},
			}}}, nil
		},
	})
	if !res.Success {
		log.Err(res.Error).Msg("Failed to bridge a safety number change notice")
	}
}

// contactName is the ghost's display name, or the name the bridge would give it.
func (ic *InteropClient) contactName(ctx context.Context, user jid.JID) string {
	if ghost, err := ic.Main.Bridge.GetExistingGhostByID(ctx, ids.MakeUserID(user)); err == nil && ghost != nil && ghost.Name != "" {
		return ghost.Name
	}
	if name, err := ic.Main.ghostName(user, "", ic.Network); err == nil {
		return name
	}
	return user.User
}
