package connector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

var (
	_ bridgev2.IdentifierResolvingNetworkAPI = (*InteropClient)(nil)
)

// ResolveIdentifier turns what a Matrix user typed to start a chat into a ghost and,
// when asked, a 1:1 portal. WhatsApp logins take a phone number in international
// format, checked with the gateway's contact lookup first, because Meta only delivers
// to users who opted in to this integrator. Messenger logins take the same, for users
// who gave Messenger a number, or a numeric Messenger id, which the gateway cannot look
// up: an unreachable id only shows when sending fails.
func (ic *InteropClient) ResolveIdentifier(ctx context.Context, identifier string, createChat bool) (*bridgev2.ResolveIdentifierResponse, error) {
	var user jid.JID
	var err error
	if ic.Network == ids.Messenger && !looksLikePhoneNumber(identifier) {
		user, err = parseMessengerID(identifier)
	} else {
		user, err = ic.lookupNumber(ctx, identifier)
	}
	if err != nil {
		return nil, err
	}
	userID := ids.MakeUserID(user)
	ghost, err := ic.UserLogin.Bridge.GetGhostByID(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("failed to get ghost: %w", err)
	}
	info, err := ic.GetUserInfo(ctx, ghost)
	if err != nil {
		return nil, err
	}
	resp := &bridgev2.ResolveIdentifierResponse{Ghost: ghost, UserID: userID, UserInfo: info}
	if createChat {
		key := ids.MakePortalKey(user, ic.UserLogin.ID)
		// GetChatInfo only reads the portal's key, so a bare one saves loading (and
		// creating) the portal here; bridgev2 does that when it makes the room.
		chatInfo, err := ic.GetChatInfo(ctx, &bridgev2.Portal{Portal: &database.Portal{PortalKey: key}})
		if err != nil {
			return nil, err
		}
		resp.Chat = &bridgev2.CreateChatResponse{PortalKey: key, PortalInfo: chatInfo}
	}
	return resp, nil
}

// lookupNumber asks the gateway whether a phone number is reachable from this
// integrator and returns its user's JID.
func (ic *InteropClient) lookupNumber(ctx context.Context, identifier string) (jid.JID, error) {
	number, err := ids.ParsePhoneNumber(identifier)
	if err != nil {
		return jid.JID{}, bridgev2.RespError(mautrix.MInvalidParam.WithMessage(
			fmt.Sprintf("%q is not a phone number: %v (write it like +491701234567)", identifier, err)))
	}
	acc := ic.account()
	if acc == nil || !ic.IsConnected() {
		return jid.JID{}, bridgev2.RespError(mautrix.MUnknown.WithMessage(
			fmt.Sprintf("Not connected to %s right now, try again once the bridge reconnects", networkDisplayName(ic.Main, ic.Network))).
			WithStatus(http.StatusServiceUnavailable))
	}
	contacts, err := acc.Client().LookupContacts(ctx, []string{"+" + number})
	if err != nil {
		return jid.JID{}, fmt.Errorf("failed to resolve %s: %w", ids.FormatPhoneNumber(number), err)
	}
	if len(contacts) != 1 {
		return jid.JID{}, fmt.Errorf("failed to look up contact: gateway answered %d results for one number", len(contacts))
	}
	if !contacts[0].In || contacts[0].JID.IsEmpty() {
		// The gateway does not say whether the number is unregistered or has not opted
		// in, and neither do we: both read the same (PROTOCOL.md section 5).
		return jid.JID{}, bridgev2.RespError(mautrix.MNotFound.WithMessage(fmt.Sprintf(
			"%s can't be reached from this service: they have not turned on third-party chats on %s or have not allowed this service",
			ids.FormatPhoneNumber(number), networkDisplayName(ic.Main, ic.Network))))
	}
	if network, ok := ids.NetworkOfUser(contacts[0].JID); !ok || network != ic.Network {
		return jid.JID{}, fmt.Errorf("failed to look up contact: gateway answered %s, not a %s user", contacts[0].JID, ic.Network)
	}
	return contacts[0].JID.ToUser(), nil
}

// looksLikePhoneNumber tells a number in international format (the only form
// ParsePhoneNumber takes) from a Messenger id, which is bare digits.
func looksLikePhoneNumber(identifier string) bool {
	s := strings.TrimSpace(identifier)
	return strings.HasPrefix(s, "+") || strings.HasPrefix(s, "00")
}

// errMessengerID explains the only identifier Messenger logins take.
var errMessengerID = errors.New("write a Messenger id as a number, like 1000042 (or 1000042@msgr), or a phone number like +491701234567")

// parseMessengerID accepts a numeric Messenger id, bare or as its JID.
func parseMessengerID(identifier string) (jid.JID, error) {
	s := strings.TrimSuffix(strings.TrimSpace(identifier), "@"+jid.ServerMessenger)
	if s == "" || len(s) > 20 || strings.Trim(s, "0123456789") != "" || s[0] == '0' {
		return jid.JID{}, bridgev2.RespError(mautrix.MInvalidParam.WithMessage(
			fmt.Sprintf("%q is not a Messenger id: %v", identifier, errMessengerID)))
	}
	return jid.New(s, jid.ServerMessenger), nil
}
