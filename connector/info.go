package connector

import (
	"context"
	"fmt"

	"go.mau.fi/util/ptr"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// GetUserInfo names a ghost from its address alone: Meta shares no profile over
// interop before the first message, so the number (or Messenger id) is all there is.
func (ic *InteropClient) GetUserInfo(_ context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	user, err := ids.ParseUserID(ghost.ID)
	if err != nil {
		return nil, err
	}
	name, err := ic.Main.ghostName(user, "", ic.Network)
	if err != nil {
		return nil, err
	}
	info := &bridgev2.UserInfo{Name: &name, IsBot: ptr.Ptr(false)}
	if number := user.Number(); number != "" && user.Server != jid.ServerMessenger {
		info.Identifiers = []string{"tel:+" + number}
	}
	return info, nil
}

// ghostName fills displayname_template. Other providers' users (met in groups) have no
// network of their own; they are named after the network of the login that saw them.
func (c *InteropConnector) ghostName(user jid.JID, pushName string, fallback ids.Network) (string, error) {
	network, ok := ids.NetworkOfUser(user)
	if !ok {
		network = fallback
	}
	number := user.User
	if user.Server != jid.ServerMessenger {
		number = ids.FormatPhoneNumber(user.Number())
	}
	name, err := c.Config.FormatDisplayname(config.DisplaynameParams{
		Number:  number,
		Name:    pushName,
		Network: networkDisplayName(c, network),
	})
	if err != nil {
		return "", fmt.Errorf("failed to name ghost: %w", err)
	}
	return name, nil
}

// GetChatInfo describes 1:1 chats, which need nothing from the network: the peer
// and this login; and groups, as the gateway describes them (w:g2 query).
func (ic *InteropClient) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	chat, err := ids.ParsePortalID(portal.ID)
	if err != nil {
		return nil, err
	}
	if chat.IsGroup() {
		info, err := ic.groupInfo(ctx, chat, true)
		if err != nil {
			return nil, err
		}
		return ic.groupChatInfo(info), nil
	}
	if network, ok := ids.NetworkOfUser(chat); !ok || network != ic.Network {
		return nil, fmt.Errorf("chat %s is not on %s, the network of this login", chat, ic.Network)
	}
	other := ids.MakeUserID(chat)
	return &bridgev2.ChatInfo{
		Type: ptr.Ptr(database.RoomTypeDM),
		Members: &bridgev2.ChatMemberList{
			IsFull:      true,
			OtherUserID: other,
			MemberMap: bridgev2.ChatMemberMap{
				// The user is only themselves: no Sender, so bridgev2 makes no ghost for
				// their own number (an interop account has no other devices whose
				// messages such a ghost would carry).
				"": {
					EventSender: bridgev2.EventSender{IsFromMe: true, SenderLogin: ic.UserLogin.ID},
					Membership:  event.MembershipJoin,
				},
				other: {
					EventSender: bridgev2.EventSender{Sender: other},
					Membership:  event.MembershipJoin,
				},
			},
		},
	}, nil
}
