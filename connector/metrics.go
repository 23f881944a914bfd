package connector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/metrics"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

var _ bridgev2.StoppableNetwork = (*InteropConnector)(nil)

// metricsShutdownTimeout bounds how long Stop waits for running scrapes.
const metricsShutdownTimeout = 5 * time.Second

// setupMetrics makes the connector's registry; the listener only starts in Start, and
// only when metrics.enabled is on. Counting happens either way, it is cheap.
func (c *InteropConnector) setupMetrics(bridge *bridgev2.Bridge) {
	src := metrics.Sources{
		Networks:    c.Config.EnabledNetworks(),
		Connections: c.connectionStates,
		Log:         bridge.Log.With().Str("component", "metrics").Logger(),
	}
	if bridge.DB != nil {
		src.QueueDepths = c.queueDepths
	}
	c.metrics = metrics.New(src)
}

// startMetrics opens the metrics listener when the config asks for it.
func (c *InteropConnector) startMetrics(ctx context.Context) error {
	if !c.Config.Metrics.Enabled {
		return nil
	}
	if c.metrics == nil {
		return errors.New("metrics are enabled but the connector was not initialised")
	}
	srv, err := c.metrics.Serve(c.Config.Metrics.Listen, zerolog.Ctx(ctx).With().Str("component", "metrics").Logger())
	if err != nil {
		return err
	}
	c.metricsServer = srv
	return nil
}

// Stop closes the metrics listener; bridgev2 calls it after every login disconnected.
func (c *InteropConnector) Stop() {
	if c.metricsServer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
	defer cancel()
	if err := c.metricsServer.Stop(ctx); err != nil && c.Bridge != nil {
		c.Bridge.Log.Warn().Err(err).Msg("Metrics listener did not stop cleanly")
	}
	c.metricsServer = nil
}

// connectionStates is every loaded login's connection state.
func (c *InteropConnector) connectionStates() []metrics.Connection {
	if c.Bridge == nil {
		return nil
	}
	var out []metrics.Connection
	for _, login := range c.Bridge.GetAllCachedUserLogins() {
		ic, ok := login.Client.(*InteropClient)
		if !ok {
			continue
		}
		state := metrics.StateDisconnected
		switch {
		case ic.IsConnected():
			state = metrics.StateConnected
		case ic.IsLoggedIn():
			state = metrics.StateConnecting
		}
		out = append(out, metrics.Connection{Network: string(ic.Network), State: state})
	}
	return out
}

// queueDepths counts the outbox of received messages and the Matrix events not yet
// handled. Both tables belong to the database package; counting is all this does.
func (c *InteropConnector) queueDepths(ctx context.Context) (metrics.QueueDepths, error) {
	var d metrics.QueueDepths
	db := c.Bridge.DB.Database
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM interop_bridge_incoming`).Scan(&d.Incoming); err != nil {
		return d, fmt.Errorf("failed to count the incoming outbox: %w", err)
	}
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM interop_bridge_as_txn WHERE handled_at IS NULL`).Scan(&d.Transactions); err != nil {
		return d, fmt.Errorf("failed to count unhandled Matrix events: %w", err)
	}
	return d, nil
}

// sendToMeta sends one message and counts it: accepted with the time since the
// Matrix event was taken (start), or failed with its code.
func (ic *InteropClient) sendToMeta(ctx context.Context, acc *interop.Account, peer jid.JID, id string, msg *waE2E.Message, start time.Time) (interop.SendResult, error) {
	sendCtx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	var res interop.SendResult
	var err error
	if peer.IsGroup() {
		res, err = ic.sendToGroup(sendCtx, acc, peer, id, msg)
	} else {
		res, err = acc.SendMessage(sendCtx, peer, id, msg, interop.SendOptions{})
	}
	network := string(ic.Network)
	if err != nil {
		ic.Main.metrics.SendFailed(network, sendFailureCode(err))
		return res, err
	}
	ic.Main.metrics.MessageOut(network, messageType(msg), time.Since(start))
	return res, nil
}

// sendFailureCode is the failure's label: the gateway's code, or one of a few words.
func sendFailureCode(err error) string {
	var ce *errcode.Error
	switch {
	case errors.As(err, &ce):
		return strconv.Itoa(ce.Code)
	case errors.Is(err, interop.ErrNoDevices):
		return "no_devices"
	case errors.Is(err, interop.ErrNotConnected):
		return "not_connected"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "other"
	}
}

// messageType is the kind of a message for the messages counter; nil is a message
// that did not decrypt.
func messageType(msg *waE2E.Message) string {
	switch {
	case msg == nil:
		return "undecryptable"
	case msg.ReactionMessage != nil:
		return "reaction"
	case msg.ProtocolMessage != nil:
		switch msg.GetProtocolMessage().GetType() {
		case waE2E.ProtocolMessage_MESSAGE_EDIT:
			return "edit"
		case waE2E.ProtocolMessage_REVOKE:
			return "revoke"
		}
		return "protocol"
	case msg.Conversation != nil || msg.ExtendedTextMessage != nil:
		return "text"
	case msg.ImageMessage != nil || msg.VideoMessage != nil || msg.AudioMessage != nil || msg.DocumentMessage != nil:
		return "media"
	case msg.LocationMessage != nil:
		return "location"
	}
	return "other"
}
