package connector

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

var (
	_ msgconv.MentionResolver = mentionResolver{}
	_ msgconv.UserResolver    = mentionResolver{}
)

// mentionResolver tells msgconv who a mention names, as one login sees it: a Meta
// user is their ghost, and the login's own account is its Matrix user. Without it a
// Meta user's @mention of the Matrix user stays plain digits, and a Matrix pill of a
// ghost reaches the Meta user as the ghost's display name, mentioning nobody.
type mentionResolver struct{ ic *InteropClient }

// JIDForMXID is the Meta user of a ghost of this login's network, the login's own
// account for its Matrix user, or the account of another Matrix user of this bridge
// logged in on the same network (met in groups, where they are members as themselves).
func (r mentionResolver) JIDForMXID(ctx context.Context, userID id.UserID) (jid.JID, bool) {
	ic := r.ic
	if ic.UserLogin != nil && userID != "" && userID == ic.UserLogin.UserMXID {
		return ic.Account, !ic.Account.IsEmpty()
	}
	br := ic.Main.Bridge
	if br == nil || br.Matrix == nil {
		return jid.JID{}, false
	}
	ghostID, ok := br.Matrix.ParseGhostMXID(userID)
	if !ok {
		return r.accountOf(ctx, userID)
	}
	user, err := ids.ParseUserID(ghostID)
	if err != nil {
		return jid.JID{}, false
	}
	// A Messenger user cannot be mentioned to WhatsApp and the other way round.
	if network, ok := ids.NetworkOfUser(user); !ok || network != ic.Network {
		return jid.JID{}, false
	}
	return user.ToUser(), true
}

// GhostOrUserForJID is the Matrix user a mentioned JID stands for and the name its
// pill shows: the login's Matrix user for its own account, else the Meta user's ghost.
func (r mentionResolver) GhostOrUserForJID(ctx context.Context, j jid.JID) (id.UserID, string, bool) {
	ic := r.ic
	user := j.ToUser()
	if user == ic.Account {
		if ic.UserLogin == nil || ic.UserLogin.UserMXID == "" {
			return "", "", false
		}
		name := ic.UserLogin.RemoteName
		if name == "" {
			name = ic.UserLogin.UserMXID.Localpart()
		}
		return ic.UserLogin.UserMXID, name, true
	}
	br := ic.Main.Bridge
	if br == nil || br.Matrix == nil {
		return "", "", false
	}
	if _, ok := ids.NetworkOfUser(user); !ok {
		// Other third-party accounts and groups have no ghost; the bridge's own users'
		// accounts are their Matrix users.
		if login := ic.ownLogin(user); login != nil && login.UserMXID != "" {
			name := login.RemoteName
			if name == "" {
				name = login.UserMXID.Localpart()
			}
			return login.UserMXID, name, true
		}
		return "", "", false
	}
	return br.Matrix.FormatGhostMXID(ids.MakeUserID(user)), ic.contactName(ctx, user), true
}

// accountOf is the account another Matrix user of this bridge has on this login's
// network, if they are logged in there.
func (r mentionResolver) accountOf(ctx context.Context, userID id.UserID) (jid.JID, bool) {
	br := r.ic.Main.Bridge
	user, err := br.GetExistingUserByMXID(ctx, userID)
	if err != nil || user == nil {
		return jid.JID{}, false
	}
	for _, login := range user.GetUserLogins() {
		if network, account, err := ids.ParseUserLoginID(login.ID); err == nil && network == r.ic.Network {
			return account, true
		}
	}
	return jid.JID{}, false
}
