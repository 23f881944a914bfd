// Package ids maps between the interop protocol's addresses (JIDs) and bridgev2's
// network IDs, in both directions, and formats phone numbers for people to read.
//
// The mapping (decided for the whole bridge):
//   - UserLoginID: "{network}:{interop user}", e.g. "whatsapp:12-491701234567"
//   - ghost UserID: the Meta user's JID, e.g. "491701234567@s.whatsapp.net", "1000042@msgr"
//   - PortalID: the chat's JID (1:1: the peer's user JID, with PortalKey.Receiver set to
//     the login, so every login has its own portal; group: the group JID)
//   - MessageID: "{chat jid}:{sender jid}:{stanza id}", both JIDs without device
//
// It imports only interop/jid and bridgev2's networkid: no connection state, no config.
package ids

import (
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// ErrInvalidID is wrapped by every parse error of this package.
var ErrInvalidID = errors.New("invalid network id")

// Network is one of Meta's networks; its value is the name used in IDs and config.
type Network string

const (
	WhatsApp  Network = "whatsapp"
	Messenger Network = "messenger"
)

// Networks lists every network in a fixed order.
func Networks() []Network { return []Network{WhatsApp, Messenger} }

// ParseNetwork reads a network name.
func ParseNetwork(s string) (Network, error) {
	switch n := Network(s); n {
	case WhatsApp, Messenger:
		return n, nil
	}
	return "", fmt.Errorf("%w: unknown network %q", ErrInvalidID, s)
}

// Server is the JID server of the network's own users.
func (n Network) Server() string {
	switch n {
	case WhatsApp:
		return jid.ServerGateway
	case Messenger:
		return jid.ServerMessenger
	}
	return ""
}

// NetworkOfUser says which network a Meta user's JID belongs to. Interop users and
// groups exist on both networks, so they have none.
func NetworkOfUser(j jid.JID) (Network, bool) {
	switch j.Server {
	case jid.ServerGateway:
		return WhatsApp, j.User != ""
	case jid.ServerMessenger:
		return Messenger, j.User != ""
	}
	return "", false
}

// MakeUserLoginID names the login of one third-party account on one network.
func MakeUserLoginID(network Network, account jid.JID) networkid.UserLoginID {
	return networkid.UserLoginID(string(network) + ":" + account.User)
}

// ParseUserLoginID is the inverse of MakeUserLoginID; it returns the account's JID.
func ParseUserLoginID(id networkid.UserLoginID) (Network, jid.JID, error) {
	name, user, ok := strings.Cut(string(id), ":")
	if !ok {
		return "", jid.JID{}, fmt.Errorf("%w: login id %q has no network prefix", ErrInvalidID, id)
	}
	network, err := ParseNetwork(name)
	if err != nil {
		return "", jid.JID{}, fmt.Errorf("%w: login id %q has an unknown network", ErrInvalidID, id)
	}
	account, err := jid.Parse(user + "@" + jid.ServerInterop)
	if err != nil || account.User != user || !validInteropUser(account) {
		return "", jid.JID{}, fmt.Errorf("%w: login id %q does not name an interop account", ErrInvalidID, id)
	}
	return network, account, nil
}

// validInteropUser checks "{integrator}-{user}" with the digit counts of section 1.
func validInteropUser(j jid.JID) bool {
	integrator, user, ok := strings.Cut(j.User, "-")
	return ok && isDigits(integrator, 1, 3) && integrator[0] != '0' && isDigits(user, 1, 15)
}

func isDigits(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MakeUserID names a ghost: the user JID without device.
func MakeUserID(user jid.JID) networkid.UserID {
	return networkid.UserID(user.ToUser().String())
}

// ParseUserID is the inverse of MakeUserID. Ghosts are WhatsApp and Messenger users,
// and third-party users of other providers met in groups.
func ParseUserID(id networkid.UserID) (jid.JID, error) {
	j, err := jid.Parse(string(id))
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: user id %q: %w", ErrInvalidID, id, err)
	}
	// Only the canonical form is accepted, so one ghost never has two IDs.
	if j.User == "" || j.Device != 0 || j.String() != string(id) || j.IsGroup() || !isUserServer(j.Server) {
		return jid.JID{}, fmt.Errorf("%w: user id %q is not a user JID", ErrInvalidID, id)
	}
	return j, nil
}

func isUserServer(server string) bool {
	return server == jid.ServerGateway || server == jid.ServerMessenger || server == jid.ServerInterop
}

// MakePortalID names a chat: the peer's user JID for 1:1 chats, the group JID for groups.
func MakePortalID(chat jid.JID) networkid.PortalID {
	return networkid.PortalID(chat.ToUser().String())
}

// ParsePortalID is the inverse of MakePortalID.
func ParsePortalID(id networkid.PortalID) (jid.JID, error) {
	j, err := jid.Parse(string(id))
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: portal id %q: %w", ErrInvalidID, id, err)
	}
	if j.User == "" || j.Device != 0 || j.String() != string(id) || !(j.IsGroup() || isUserServer(j.Server)) {
		return jid.JID{}, fmt.Errorf("%w: portal id %q is not a chat JID", ErrInvalidID, id)
	}
	return j, nil
}

// MakePortalKey keys a chat as seen by one login. 1:1 chats are split per login (the
// same Meta user talking to two Matrix users is two conversations); groups are shared.
func MakePortalKey(chat jid.JID, login networkid.UserLoginID) networkid.PortalKey {
	key := networkid.PortalKey{ID: MakePortalID(chat)}
	if !chat.IsGroup() {
		key.Receiver = login
	}
	return key
}

// MessageKey is what a MessageID is made of.
type MessageKey struct {
	Chat     jid.JID
	Sender   jid.JID
	StanzaID string
}

// MakeMessageID names a message. Stanza ids are unique only per sender and chat, so
// both are part of the ID; devices are dropped so every device's copy maps to one ID.
func MakeMessageID(chat, sender jid.JID, stanzaID string) networkid.MessageID {
	return networkid.MessageID(chat.ToUser().String() + ":" + sender.ToUser().String() + ":" + stanzaID)
}

// ID formats the key as a MessageID.
func (k MessageKey) ID() networkid.MessageID {
	return MakeMessageID(k.Chat, k.Sender, k.StanzaID)
}

// ParseMessageID is the inverse of MakeMessageID. The JIDs have no device, so they
// hold no ':' and the first two colons split the parts; the stanza id may hold more.
func ParseMessageID(id networkid.MessageID) (MessageKey, error) {
	parts := strings.SplitN(string(id), ":", 3)
	if len(parts) != 3 || parts[2] == "" {
		return MessageKey{}, fmt.Errorf("%w: message id %q is not chat:sender:id", ErrInvalidID, id)
	}
	chat, err := ParsePortalID(networkid.PortalID(parts[0]))
	if err != nil {
		return MessageKey{}, fmt.Errorf("%w: message id %q has a bad chat", ErrInvalidID, id)
	}
	sender, err := ParseUserID(networkid.UserID(parts[1]))
	if err != nil {
		return MessageKey{}, fmt.Errorf("%w: message id %q has a bad sender", ErrInvalidID, id)
	}
	return MessageKey{Chat: chat, Sender: sender, StanzaID: parts[2]}, nil
}
