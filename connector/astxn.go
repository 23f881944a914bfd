package connector

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/astxn"
)

// Matrix events the homeserver gave us but we never handled are replayed after a
// restart for at most this long; older ones would surprise the people in the room.
const replayMaxAge = 24 * time.Hour

// attachTracker persists every appservice transaction before it is acknowledged (see
// connector/astxn). Messages in portal rooms stay unhandled until HandleMatrixMessage
// returns; everything else counts as handled once bridgev2's handlers returned.
func (c *InteropConnector) attachTracker(bridge *bridgev2.Bridge) {
	mx, ok := realMatrix(bridge)
	if !ok || mx.AS == nil || mx.EventProcessor == nil {
		return
	}
	t := astxn.New(c.DB)
	t.MaxAge = replayMaxAge
	t.Defer = c.handledByConnector
	if err := t.Attach(mx.AS, mx.EventProcessor); err != nil {
		bridge.Log.Warn().Err(err).Msg("Matrix transactions are not persisted before they are acknowledged")
		return
	}
	c.tracker = t
}

// handledByConnector says which events the connector marks handled itself: messages
// in portal rooms, which reach HandleMatrixMessage.
func (c *InteropConnector) handledByConnector(ctx context.Context, evt *event.Event) bool {
	if evt.Type != event.EventMessage || c.Bridge.IsGhostMXID(evt.Sender) {
		return false
	}
	portal, err := c.Bridge.GetPortalByMXID(ctx, evt.RoomID)
	return err == nil && portal != nil
}

// startTracker replays what the last run received but did not handle, and prunes old
// rows. It runs after the Matrix side started, which holds new transactions until
// the replay is done.
func (c *InteropConnector) startTracker() {
	mx, ok := realMatrix(c.Bridge)
	if c.tracker == nil || !ok {
		return
	}
	ctx := c.Bridge.BackgroundCtx
	log := c.Bridge.Log.With().Str("component", "astxn").Logger()
	ctx = log.WithContext(ctx)
	go func() {
		// bridgev2 loads the logins after the network connector started; an event
		// replayed before its login is loaded would be refused as "not logged in".
		c.waitForLogins(ctx, 30*time.Second)
		n, err := c.tracker.Replay(ctx, mx.AS)
		if err != nil {
			log.Err(err).Msg("Failed to replay unhandled Matrix events")
		} else if n > 0 {
			log.Info().Int("count", n).Msg("Replayed Matrix events received before the last stop")
		}
		if interval := c.Config.MatrixCatchUp.Interval(); interval > 0 {
			catchUp := &astxn.CatchUp{Tracker: c.tracker, AS: mx.AS, Cursor: c.DB,
				Interval: interval, Grace: c.Config.MatrixCatchUp.Grace(),
				Ignore: func(userID id.UserID) bool {
					return userID == mx.AS.BotMXID() || c.Bridge.IsGhostMXID(userID)
				}}
			catchUp.Run(ctx)
		}
	}()
	go c.tracker.PruneLoop(ctx, time.Hour, replayMaxAge)
}

// waitForLogins waits until bridgev2 has loaded every stored login, or the timeout.
func (c *InteropConnector) waitForLogins(ctx context.Context, timeout time.Duration) {
	log := zerolog.Ctx(ctx)
	deadline := time.Now().Add(timeout)
	for {
		missing, err := c.unloadedLogins(ctx)
		if err != nil {
			log.Err(err).Msg("Failed to list logins before the replay")
			return
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			log.Warn().Int("not_loaded", missing).Msg("Replaying Matrix events before every login is loaded")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// unloadedLogins counts the stored logins bridgev2 has not loaded yet.
func (c *InteropConnector) unloadedLogins(ctx context.Context) (int, error) {
	users, err := c.Bridge.DB.UserLogin.GetAllUserIDsWithLogins(ctx)
	if err != nil {
		return 0, err
	}
	missing := 0
	for _, userID := range users {
		logins, err := c.Bridge.DB.UserLogin.GetAllForUser(ctx, userID)
		if err != nil {
			return 0, err
		}
		for _, login := range logins {
			if c.Bridge.GetCachedUserLoginByID(login.ID) == nil {
				missing++
			}
		}
	}
	return missing, nil
}

// markHandled records that a Matrix event was bridged or definitively refused.
func (c *InteropConnector) markHandled(ctx context.Context, evt *event.Event) {
	if c.tracker == nil || evt == nil {
		return
	}
	if err := c.tracker.MarkHandled(ctx, evt.ID.String()); err != nil {
		zerolog.Ctx(ctx).Err(err).Stringer("event_id", evt.ID).Msg("Failed to mark Matrix event handled")
	}
}

// markRefused marks a Matrix event handled that bridgev2 refused for good.
func (c *InteropConnector) markRefused(ctx context.Context, eventID id.EventID) {
	if c.tracker == nil {
		return
	}
	if err := c.tracker.MarkHandled(ctx, eventID.String()); err != nil {
		zerolog.Ctx(ctx).Err(err).Stringer("event_id", eventID).Msg("Failed to mark refused Matrix event handled")
	}
}

// requireSynchronousPortals turns off bridgev2's per-portal event buffer. With a buffer,
// queueing an event returns before the portal handled it, so a Matrix message would
// count as handled (and a Meta message would be dropped from the outbox) while it
// still sits in memory; a crash then loses it. Without the buffer, both sides learn
// the real outcome, at the cost of handling each portal's events one at a time.
func (c *InteropConnector) requireSynchronousPortals(bridge *bridgev2.Bridge) {
	if bridge.Config == nil || bridge.Config.PortalEventBuffer == 0 {
		return
	}
	bridge.Log.Info().
		Int("configured", bridge.Config.PortalEventBuffer).
		Msg("Setting bridge.portal_event_buffer to 0: messages are acknowledged only after they were bridged")
	bridge.Config.PortalEventBuffer = 0
}
