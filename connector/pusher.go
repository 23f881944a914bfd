package connector

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/callbacks"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Push connects the login of account because the gateway holds stanzas for it
// (PROTOCOL.md section 9: the provider connects within 60 s). It returns at once; the
// connection is made in the background. An account without a login is unknown, and
// so is one whose login is on another network.
func (c *InteropConnector) Push(ctx context.Context, network string, account jid.JID, pending int) error {
	n, err := ids.ParseNetwork(network)
	if err != nil {
		return callbacks.ErrUnknownAccount
	}
	loginID := ids.MakeUserLoginID(n, account)
	login := c.Bridge.GetCachedUserLoginByID(loginID)
	if login == nil {
		// Loads it (and its client) from the database when it is not cached.
		login, err = c.Bridge.GetExistingUserLoginByID(ctx, loginID)
		if err != nil {
			return fmt.Errorf("failed to look up login %s: %w", loginID, err)
		}
	}
	if login == nil {
		return callbacks.ErrUnknownAccount
	}
	client, ok := login.Client.(*InteropClient)
	if !ok {
		return fmt.Errorf("login %s has no interop client", loginID)
	}
	log := login.Log.With().Str("action", "push").Int("pending", pending).Logger()
	if client.IsLoggedIn() {
		log.Debug().Msg("Push for a login that is already connecting or connected")
		return nil
	}
	log.Info().Msg("Connecting a login because the gateway has stanzas for it")
	// Connect starts the run loop in the background and returns quickly.
	client.Connect(log.WithContext(c.Bridge.BackgroundCtx))
	zerolog.Ctx(ctx).Debug().Str("login_id", string(loginID)).Msg("Push handled")
	return nil
}
