package connector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
)

// Bridge state error codes this client reports.
const (
	StateNetworkDisabled   status.BridgeStateErrorCode = "metainterop-network-disabled"
	StateConnectFailed     status.BridgeStateErrorCode = "metainterop-connect-failed"
	StateTokenRejected     status.BridgeStateErrorCode = "metainterop-token-rejected"
	StateLoggedOut         status.BridgeStateErrorCode = "metainterop-logged-out"
	StateReplaced          status.BridgeStateErrorCode = "metainterop-replaced"
	StateUntrustedGateway  status.BridgeStateErrorCode = "metainterop-untrusted-gateway"
	StateConnectionDropped status.BridgeStateErrorCode = "metainterop-connection-dropped"
	StateStopped           status.BridgeStateErrorCode = "metainterop-stopped"
)

// Human messages of the bridge states.
const (
	msgTokenRejected    = "Meta's gateway rejected this account's token; sign in again"
	msgLoggedOut        = "Meta's gateway logged this account out; sign in again"
	msgReplaced         = "Another connection took over this account; this bridge stopped its own so as not to fight over it"
	msgUntrustedGateway = "The gateway could not prove it is Meta's (its certificate does not lead to the configured root key); check the gateway URL and root_public_key"
	msgDropped          = "The connection to Meta's gateway dropped; reconnecting"
)

// ErrNotImplemented is wrapped by every operation this client does not do yet, so
// callers and tests can tell "not built" from a real failure.
var ErrNotImplemented = errors.New("not implemented yet")

// InteropClient is one login's connection to one network: an interop.Account run in
// the background, whose events become bridge states and remote events.
type InteropClient struct {
	Main      *InteropConnector
	UserLogin *bridgev2.UserLogin
	Network   ids.Network
	// Account is the login's own address, {integrator}-{number}@interop.
	Account jid.JID

	// queueRemoteEvent hands an event to bridgev2; tests replace it to see what would
	// be bridged without a Matrix homeserver.
	queueRemoteEvent func(bridgev2.RemoteEvent) bridgev2.EventHandlingResult

	lock      sync.Mutex
	acc       *interop.Account
	cancel    context.CancelFunc
	done      chan struct{} // closed when the current run loop returned
	connected bool
	// replayed is closed when the current run loop has replayed the outbox; live
	// messages wait for it so that they come after the replayed ones.
	replayed chan struct{}

	// mediaConn is the login's media download credentials (media_in.go).
	mediaConn mediaConnCache
	// groups is what the gateway said about the login's groups (groups.go).
	groups groupCache
}

var (
	_ bridgev2.NetworkAPI           = (*InteropClient)(nil)
	_ bridgev2.NetworkAPIWithUserID = (*InteropClient)(nil)
)

func newInteropClient(c *InteropConnector, login *bridgev2.UserLogin, network ids.Network, account jid.JID) *InteropClient {
	ic := &InteropClient{Main: c, UserLogin: login, Network: network, Account: account}
	ic.queueRemoteEvent = func(evt bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
		if c.queueRemoteEvent != nil {
			return c.queueRemoteEvent(ic.UserLogin, evt)
		}
		return ic.UserLogin.QueueRemoteEvent(evt)
	}
	return ic
}

// Connect starts the account's run loop in the background, creating the account's
// Signal identity if this is its first connection. It reports through the bridge
// state, never by returning errors (bridgev2's contract). Connecting a login whose
// loop already runs does nothing.
func (ic *InteropClient) Connect(ctx context.Context) {
	log := zerolog.Ctx(ctx)
	if _, err := ic.Main.section(ic.Network); err != nil {
		log.Warn().Err(err).Msg("Not connecting a login whose network is disabled")
		ic.sendState(status.StateBadCredentials, StateNetworkDisabled,
			fmt.Sprintf("%s is not enabled on this bridge any more", networkDisplayName(ic.Main, ic.Network)))
		return
	}
	ic.lock.Lock()
	defer ic.lock.Unlock()
	if ic.cancel != nil {
		log.Debug().Msg("Run loop is already running")
		return
	}
	acc, err := ic.newAccount(ctx)
	if err != nil {
		log.Err(err).Msg("Failed to set up the interop account")
		ic.sendState(status.StateUnknownError, StateConnectFailed, "Failed to set up this account's encryption keys: "+err.Error())
		return
	}
	// The loop outlives Connect's ctx, which bridgev2 may end when the login step ends,
	// and ends with the bridge.
	base := context.WithoutCancel(ctx)
	if ic.Main.Bridge != nil && ic.Main.Bridge.BackgroundCtx != nil {
		base = ic.Main.Bridge.BackgroundCtx
	}
	runCtx, cancel := context.WithCancel(log.WithContext(base))
	done := make(chan struct{})
	ic.acc, ic.cancel, ic.done, ic.connected = acc, cancel, done, false
	ic.replayed = make(chan struct{})
	ic.sendState(status.StateConnecting, "", "")
	go ic.run(runCtx, acc, done, ic.replayed)
}

// newAccount loads (or, on the first connection, creates) the account's Signal
// identity and wraps it in an interop.Account whose every dial mints a fresh token.
func (ic *InteropClient) newAccount(ctx context.Context) (*interop.Account, error) {
	stored, err := ic.Main.signalAccount(ctx, ic.Account)
	if err != nil {
		return nil, err
	}
	return interop.NewAccount(interop.AccountConfig{
		Client:  interop.Config{Dial: ic.dial},
		Store:   ic.Main.Store.StoreFor(stored),
		Handler: ic.handleEvent,
		Log:     *zerolog.Ctx(ctx),
	})
}

// signalAccount returns the account's stored Signal identity, creating it on first
// use. The interop.Account uploads its keys by itself on the gateway's first
// <success new="1">.
func (c *InteropConnector) signalAccount(ctx context.Context, account jid.JID) (*store.Account, error) {
	stored, err := c.Store.GetAccount(ctx, account)
	if errors.Is(err, store.ErrNotFound) {
		stored, err = c.Store.CreateAccount(ctx, account)
		if errors.Is(err, sqlstore.ErrAccountExists) {
			// A concurrent login of the same account created it first.
			stored, err = c.Store.GetAccount(ctx, account)
		} else if err == nil {
			zerolog.Ctx(ctx).Info().Stringer("account", account).Msg("Created the account's Signal identity")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to load the Signal account: %w", err)
	}
	return stored, nil
}

// dial mints a token for this connection only (the plaintext never leaves this
// call's memory) and logs in with it.
func (ic *InteropClient) dial(ctx context.Context) (interop.FrameConn, error) {
	section, err := ic.Main.section(ic.Network)
	if err != nil {
		return nil, err
	}
	user, err := strconv.ParseUint(ic.Account.Number(), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("account %s has no numeric user: %w", ic.Account, err)
	}
	token, _, err := ic.Main.DB.MintToken(ctx, string(ic.Network), ic.Account.String(), ic.Main.tokenTTL())
	if err != nil {
		return nil, fmt.Errorf("failed to mint a login token: %w", err)
	}
	product := waWa6.ClientPayload_INTEROP
	if ic.Network == ids.Messenger {
		product = waWa6.ClientPayload_INTEROP_MSGR
	}
	payload := &waWa6.ClientPayload{
		Username: proto.Uint64(user),
		Device:   proto.Uint32(0),
		Product:  &product,
		InteropData: &waWa6.ClientPayload_InteropData{
			AccountID:          proto.Uint64(uint64(section.IntegratorID)),
			Token:              []byte(token),
			EnableReadReceipts: proto.Bool(ic.Main.Config.EnableReadReceipts),
		},
	}
	return interop.SocketDialer(socket.DialOptions{URL: section.GatewayURL, RootKey: section.RootKey(), Payload: payload})(ctx)
}

// run replays the outbox while it connects, keeps the connection until Disconnect or
// a terminal refusal, then says why it stopped.
//
// The replay must not hold up the connection: a portal may be busy with a Matrix
// message replayed at start that waits for the gateway, and the outbox replay waits
// for that portal. Messages received live wait for the replay instead (waitReplayed),
// so that the replayed ones still come first.
func (ic *InteropClient) run(ctx context.Context, acc *interop.Account, done, replayed chan struct{}) {
	defer close(done)
	go func() {
		defer close(replayed)
		// Messages acked but not bridged before a crash or a failed queueing go first.
		ic.replayIncoming(ctx)
	}()
	err := acc.Run(ctx)
	ic.lock.Lock()
	if ic.done == done {
		ic.cancel, ic.connected = nil, false
	}
	ic.lock.Unlock()
	log := zerolog.Ctx(ctx)
	switch {
	case ctx.Err() != nil:
		log.Debug().Msg("Run loop stopped by Disconnect")
	case errors.Is(err, errcode.ErrUnauthorized):
		log.Warn().Err(err).Msg("Gateway rejected the login token")
		ic.sendState(status.StateBadCredentials, StateTokenRejected, msgTokenRejected)
	case errors.Is(err, interop.ErrLoggedOut):
		log.Warn().Msg("Gateway logged the account out")
		ic.sendState(status.StateLoggedOut, StateLoggedOut, msgLoggedOut)
	case errors.Is(err, interop.ErrReplaced):
		log.Warn().Msg("Another connection replaced this one; not reconnecting")
		ic.sendState(status.StateUnknownError, StateReplaced, msgReplaced)
	default:
		log.Err(err).Msg("Run loop stopped")
		ic.sendState(status.StateUnknownError, StateStopped, fmt.Sprintf("The connection to Meta's gateway stopped: %v", err))
	}
}

// handleEvent turns the account's events into bridge states and remote events. It is
// called from one goroutine, in order.
func (ic *InteropClient) handleEvent(ctx context.Context, evt interop.Event) {
	log := zerolog.Ctx(ctx)
	switch e := evt.(type) {
	case *interop.Connected:
		ic.setConnected(true)
		ic.sendState(status.StateConnected, "", "")
	case *interop.Disconnected:
		ic.setConnected(false)
		switch {
		case !e.WillReconnect:
			// run reports the reason once Run returned.
		case errors.Is(e.Err, socket.ErrUntrustedGateway):
			log.Error().Err(e.Err).Msg("Gateway certificate is not trusted")
			ic.sendState(status.StateUnknownError, StateUntrustedGateway, msgUntrustedGateway)
		default:
			log.Warn().Err(e.Err).Stringer("retry_in", e.RetryIn).Msg("Disconnected from the gateway")
			ic.sendState(status.StateTransientDisconnect, StateConnectionDropped, msgDropped)
		}
	case *interop.ConnectFailure:
		log.Warn().Err(e.Err).Msg("Gateway refused the login")
	case *interop.PreKeysUploaded:
		log.Debug().Int("count", e.Count).Str("reason", string(e.Reason)).Msg("Gateway accepted prekeys")
	case *interop.IncomingMessage:
		ic.handleMessage(ctx, e.Node)
	case *interop.IncomingReceipt:
		ic.handleReceipt(ctx, e.Node)
	case *interop.IncomingChatState:
		ic.handleChatState(ctx, e.Node)
	case *interop.IncomingNotification:
		// The Account handled the key ones; restrictions show as send refusals.
		if e.Node.Attr("type") == "w:gp2" {
			ic.handleGroupNotification(ctx, e)
		} else {
			ic.ack(ctx, e.Node)
		}
	case *interop.SafetyNumberChanged:
		ic.handleSafetyNumberChanged(ctx, e)
	default:
		// TODO offline markers.
	}
}

// ack acknowledges a stanza handled (or deliberately ignored); a failed ack only
// means the gateway delivers it again.
func (ic *InteropClient) ack(ctx context.Context, n stanza.Node) {
	if acc := ic.account(); acc != nil {
		if err := acc.Client().Ack(ctx, n); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("stanza", n.Tag).Msg("Failed to ack stanza")
		}
	}
}

func (ic *InteropClient) setConnected(c bool) {
	ic.lock.Lock()
	ic.connected = c
	ic.lock.Unlock()
}

// waitReplayed waits until the current run loop replayed the outbox.
func (ic *InteropClient) waitReplayed(ctx context.Context) {
	ic.lock.Lock()
	replayed := ic.replayed
	ic.lock.Unlock()
	if replayed == nil {
		return
	}
	select {
	case <-replayed:
	case <-ctx.Done():
	}
}

func (ic *InteropClient) account() *interop.Account {
	ic.lock.Lock()
	defer ic.lock.Unlock()
	return ic.acc
}

func (ic *InteropClient) sendState(evt status.BridgeStateEvent, code status.BridgeStateErrorCode, msg string) {
	ic.UserLogin.BridgeState.Send(status.BridgeState{StateEvent: evt, Error: code, Message: msg})
}

// Disconnect stops the run loop and waits for it (bounded, so a stuck handler cannot
// hold up a bridge shutdown).
func (ic *InteropClient) Disconnect() {
	ic.lock.Lock()
	cancel, done := ic.cancel, ic.done
	ic.cancel, ic.connected = nil, false
	ic.lock.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		ic.UserLogin.Log.Warn().Msg("Run loop did not stop within 10 s of Disconnect")
	}
}

// IsLoggedIn is true while the run loop is alive: connected, or reconnecting after a
// drop. A loop that stopped for good (token rejected, replaced, logged out) or was
// never started is not logged in.
func (ic *InteropClient) IsLoggedIn() bool {
	ic.lock.Lock()
	defer ic.lock.Unlock()
	return ic.acc != nil && ic.cancel != nil
}

// IsConnected is true while a connection is past the gateway's <success>.
func (ic *InteropClient) IsConnected() bool {
	ic.lock.Lock()
	defer ic.lock.Unlock()
	return ic.connected
}

// LogoutRemote stops the connection, revokes the account's tokens so no one can log
// in with them again, and deletes its Signal identity and sessions: signing in again
// starts a new identity, as Meta expects after a logout.
func (ic *InteropClient) LogoutRemote(ctx context.Context) {
	log := zerolog.Ctx(ctx)
	ic.Disconnect()
	if n, err := ic.Main.DB.RevokeTokens(ctx, string(ic.Network), ic.Account.String()); err != nil {
		log.Err(err).Msg("Failed to revoke the account's login tokens")
	} else {
		log.Info().Int64("revoked", n).Msg("Revoked the account's login tokens")
	}
	if err := ic.Main.Store.DeleteAccount(ctx, ic.Account); err != nil {
		log.Err(err).Msg("Failed to delete the account's Signal identity")
	}
	if err := ic.Main.DB.DeleteLoginIncoming(ctx, string(ic.UserLogin.ID)); err != nil {
		log.Err(err).Msg("Failed to delete the account's unbridged incoming messages")
	}
	ic.lock.Lock()
	ic.acc = nil
	ic.lock.Unlock()
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

// GetCapabilities advertises replies, edits, deletions and reactions (see
// editFeatures) and the files and sizes that can be sent (mediaFeatures); what text
// may hold is msgconv's business.
// TODO declare formatting once it is.
func (ic *InteropClient) GetCapabilities(_ context.Context, _ *bridgev2.Portal) *event.RoomFeatures {
	features := &event.RoomFeatures{
		ID: "io.github.matrix-meta-interop.capabilities.2026_11_25.3",
	}
	editFeatures(features)
	limits := &config.MediaConfig{}
	if ic.Main != nil {
		limits = &ic.Main.Config.Media
	}
	mediaFeatures(features, limits)
	return features
}
