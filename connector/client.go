package connector

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Bridge state error codes this client reports.
const (
	StateNetworkDisabled   status.BridgeStateErrorCode = "metainterop-network-disabled"
	StateConnectNotBuilt   status.BridgeStateErrorCode = "metainterop-connect-not-implemented"
	messageStatusNotBuilt                              = "Sending to WhatsApp and Messenger is not implemented in this bridge version yet"
	connectNotBuiltMessage                             = "Connecting to Meta's gateway is not implemented in this bridge version yet"
)

// ErrNotImplemented is wrapped by every operation this client does not do yet, so
// callers and tests can tell "not built" from a real failure.
var ErrNotImplemented = errors.New("not implemented yet")

// InteropClient is one login's connection to one network. For now it has no
// connection: every operation that needs one says so instead of pretending.
type InteropClient struct {
	Main      *InteropConnector
	UserLogin *bridgev2.UserLogin
	Network   ids.Network
	// Account is the login's own address, {integrator}-{number}@interop.
	Account jid.JID
}

var (
	_ bridgev2.NetworkAPI           = (*InteropClient)(nil)
	_ bridgev2.NetworkAPIWithUserID = (*InteropClient)(nil)
)

func newInteropClient(c *InteropConnector, login *bridgev2.UserLogin, network ids.Network, account jid.JID) *InteropClient {
	return &InteropClient{Main: c, UserLogin: login, Network: network, Account: account}
}

// Connect reports through the bridge state why the login is not connected; it may not
// return errors by bridgev2's contract.
func (ic *InteropClient) Connect(ctx context.Context) {
	if _, err := ic.Main.section(ic.Network); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Not connecting a login whose network is disabled")
		ic.UserLogin.BridgeState.Send(status.BridgeState{
			StateEvent: status.StateBadCredentials,
			Error:      StateNetworkDisabled,
			Message:    fmt.Sprintf("%s is not enabled on this bridge any more", networkDisplayName(ic.Main, ic.Network)),
		})
		return
	}
	zerolog.Ctx(ctx).Warn().Msg("Connecting to the gateway is not implemented yet")
	ic.UserLogin.BridgeState.Send(status.BridgeState{
		StateEvent: status.StateUnknownError,
		Error:      StateConnectNotBuilt,
		Message:    connectNotBuiltMessage,
	})
}

// Disconnect has no connection to close yet.
func (ic *InteropClient) Disconnect() {}

// IsLoggedIn is false: no connection has ever been authenticated by the gateway.
func (ic *InteropClient) IsLoggedIn() bool {
	return false
}

// LogoutRemote cannot tell Meta anything yet; the login is still deleted locally by
// bridgev2, so the log says what stays behind.
func (ic *InteropClient) LogoutRemote(ctx context.Context) {
	zerolog.Ctx(ctx).Warn().Msg("Remote logout is not implemented yet; the account's keys stay on Meta's gateway")
}

// IsThisUser matches the login's own interop address, which is how the account
// appears among group members and as the sender of its own messages.
func (ic *InteropClient) IsThisUser(_ context.Context, userID networkid.UserID) bool {
	return userID == ids.MakeUserID(ic.Account)
}

// GetUserID is the login's own address as a user ID.
func (ic *InteropClient) GetUserID() networkid.UserID {
	return ids.MakeUserID(ic.Account)
}

// GetCapabilities advertises nothing that could be sent yet.
func (ic *InteropClient) GetCapabilities(_ context.Context, _ *bridgev2.Portal) *event.RoomFeatures {
	return &event.RoomFeatures{
		ID: "io.github.matrix-meta-interop.capabilities.2026_11_25",
	}
}

// HandleMatrixMessage refuses with a notice in the room, so the sender knows the
// message did not reach anyone.
func (ic *InteropClient) HandleMatrixMessage(_ context.Context, _ *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	return nil, bridgev2.WrapErrorInStatus(fmt.Errorf("sending: %w", ErrNotImplemented)).
		WithIsCertain(true).
		WithSendNotice(true).
		WithErrorReason(event.MessageStatusUnsupported).
		WithMessage(messageStatusNotBuilt)
}
