package gateway

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// frameConn is a connection carrying whole frames: a socket.Conn for third-party
// accounts, the gateway's end of a pipe for in-process Meta devices.
type frameConn interface {
	ReadFrame(ctx context.Context) ([]byte, error)
	WriteFrame(ctx context.Context, frame []byte) error
	Close() error
	CloseNow() error
}

// errFrameTooLarge is what the in-process pipe reports for a frame over the limit.
var errFrameTooLarge = errors.New("frame larger than 1 MiB")

// session is one live connection of an endpoint: a third-party account (device 0)
// or one Meta device.
type session struct {
	g            *Gateway
	endpoint     jid.JID // the device
	thirdParty   bool
	integrator   uint16 // third-party accounts only
	readReceipts bool   // third-party: enableReadReceipts of this connection
	conn         frameConn
	log          zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	writeMu sync.Mutex
	wake    chan struct{}
	once    sync.Once
}

func (g *Gateway) newSession(endpoint jid.JID, conn frameConn) *session {
	ctx, cancel := context.WithCancel(g.ctx)
	log := g.log.With().Stringer("endpoint", endpoint).Logger()
	return &session{
		g:        g,
		endpoint: endpoint,
		conn:     conn,
		log:      log,
		ctx:      log.WithContext(ctx),
		cancel:   cancel,
		wake:     make(chan struct{}, 1),
	}
}

// user is the endpoint's user JID.
func (s *session) user() jid.JID { return s.endpoint.ToUser() }

// run serves an authenticated connection until it ends: <success>, the offline
// queue, <ib><offline/></ib>, then routing.
func (s *session) run(isNew bool, expires time.Time) {
	defer s.closeNow()
	s.g.attach(s)
	defer s.g.detach(s)

	count, maxSeq, err := s.g.st.QueueStats(s.ctx, s.endpoint)
	if err != nil {
		s.log.Err(err).Msg("Failed to read the offline queue")
		return
	}
	success := stanza.Node{Tag: "success", Attrs: stanza.Attrs{"t": strconv.FormatInt(s.g.now().Unix(), 10)}}
	if isNew {
		success.Attrs["new"] = "1"
	}
	if err := s.write(success); err != nil {
		return
	}
	s.log.Info().Bool("new", isNew).Int("offline", count).Msg("Endpoint connected")

	var pump sync.WaitGroup
	pump.Go(func() { s.pump(maxSeq, count) })
	defer pump.Wait()
	defer s.cancel()

	if !expires.IsZero() {
		// A token past its end is checked again: the client reconnects at once with
		// what it holds now.
		timer := time.AfterFunc(time.Until(expires), func() {
			s.log.Info().Msg("Login token expired, asking the client to reconnect")
			s.streamError(stanza.Attrs{"code": "515"})
		})
		defer timer.Stop()
	}
	s.readLoop()
}

// readLoop reads and handles stanzas until the connection ends.
func (s *session) readLoop() {
	idle := s.g.cfg.Limits.IdleTimeout
	for {
		rctx, cancel := context.WithTimeout(s.ctx, idle)
		frame, err := s.conn.ReadFrame(rctx)
		timedOut := rctx.Err() != nil && s.ctx.Err() == nil
		cancel()
		if err != nil {
			switch {
			case errors.Is(err, socket.ErrFrameTooLarge), errors.Is(err, errFrameTooLarge):
				s.streamError(stanza.Attrs{"code": "413"})
			case timedOut:
				s.log.Info().Dur("idle", idle).Msg("Closing silent connection")
			case s.ctx.Err() == nil:
				s.log.Debug().Err(err).Msg("Connection ended")
			}
			return
		}
		if len(frame) > stanza.MaxFrameSize {
			s.streamError(stanza.Attrs{"code": "413"})
			return
		}
		n, err := stanza.Unmarshal(frame)
		if err != nil {
			code := "400"
			if errors.Is(err, stanza.ErrTooLarge) {
				code = "413"
			}
			// The error never quotes the frame, so it is safe to log.
			s.log.Warn().Err(err).Int("frame_len", len(frame)).Msg("Undecodable frame, closing")
			s.streamError(stanza.Attrs{"code": code})
			return
		}
		s.handle(n)
	}
}

// handle routes one stanza from the endpoint. Unknown stanzas are ignored (forward
// compatibility, section 3).
func (s *session) handle(n stanza.Node) {
	ctx := s.ctx
	switch n.Tag {
	case "iq":
		s.handleIQ(ctx, n)
	case "message":
		s.handleMessage(ctx, n)
	case "receipt":
		s.handleReceipt(ctx, n)
	case "chatstate":
		s.handleChatState(ctx, n)
	case "ack":
		s.handleAck(ctx, n)
	default:
		s.log.Debug().Stringer("stanza", n).Msg("Ignoring unknown stanza")
	}
}

// handleAck removes what the endpoint acknowledged from its queue.
func (s *session) handleAck(ctx context.Context, n stanza.Node) {
	class, id := n.Attr("class"), n.Attr("id")
	switch class {
	case "message", "receipt", "notification":
	default:
		return
	}
	if id == "" {
		return
	}
	filter := gwstore.AckFilter{Class: class, ID: id, From: n.Attr("to"), Participant: n.Attr("participant"),
		Type: n.Attr("type"), HasType: n.HasAttr("type")}
	if _, err := s.g.st.Ack(ctx, s.endpoint, filter); err != nil && ctx.Err() == nil {
		s.log.Err(err).Msg("Failed to remove acked stanza")
	}
}

// write sends one stanza, after the delay fault if one is set. A failed write ends
// the connection.
func (s *session) write(n stanza.Node) error {
	frame, err := stanza.Marshal(n)
	if err != nil {
		s.log.Err(err).Stringer("stanza", n).Msg("Failed to encode stanza")
		return err
	}
	return s.writeFrame(frame)
}

func (s *session) writeFrame(frame []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if d := s.g.faults.delay(s.endpoint); d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-s.ctx.Done():
			timer.Stop()
			return s.ctx.Err()
		}
	}
	if err := s.ctx.Err(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(s.ctx, s.g.cfg.Limits.WriteTimeout)
	defer cancel()
	if err := s.conn.WriteFrame(wctx, frame); err != nil {
		s.log.Debug().Err(err).Msg("Write failed, dropping connection")
		s.closeNow()
		return err
	}
	return nil
}

// streamError sends <stream:error …/> and closes the connection.
func (s *session) streamError(attrs stanza.Attrs, children ...stanza.Node) {
	var content any
	if len(children) > 0 {
		content = children
	}
	_ = s.write(stanza.Node{Tag: "stream:error", Attrs: attrs, Content: content})
	s.close()
}

// close ends the connection with a closing handshake.
func (s *session) close() {
	s.once.Do(func() {
		s.cancel()
		_ = s.conn.Close()
	})
}

// closeNow drops the connection as a network failure would.
func (s *session) closeNow() {
	s.once.Do(func() {
		s.cancel()
		_ = s.conn.CloseNow()
	})
}

// poke wakes the queue pump.
func (s *session) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// attach makes s the endpoint's live session; a previous one is replaced (section 1:
// one connection per account).
func (g *Gateway) attach(s *session) {
	g.mu.Lock()
	old := g.sessions[s.endpoint]
	g.sessions[s.endpoint] = s
	g.mu.Unlock()
	if old != nil {
		old.log.Info().Msg("Connection replaced by a new one")
		// Not waited for: closing may wait for the old peer's closing handshake.
		g.wg.Go(func() {
			old.streamError(nil, stanza.Node{Tag: "conflict", Attrs: stanza.Attrs{"type": "replaced"}})
		})
	}
}

// detach forgets s unless a newer session replaced it already.
func (g *Gateway) detach(s *session) {
	g.mu.Lock()
	if g.sessions[s.endpoint] == s {
		delete(g.sessions, s.endpoint)
	}
	g.mu.Unlock()
	s.log.Info().Msg("Endpoint disconnected")
}

// live returns the endpoint's live session, or nil.
func (g *Gateway) live(endpoint jid.JID) *session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessions[endpoint]
}

// ConnectedEndpoints lists the endpoints with a live connection.
func (g *Gateway) ConnectedEndpoints() []jid.JID {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]jid.JID, 0, len(g.sessions))
	for e := range g.sessions {
		out = append(out, e)
	}
	jid.Sort(out)
	return out
}

// IsConnected reports whether an endpoint has a live connection.
func (g *Gateway) IsConnected(endpoint jid.JID) bool { return g.live(endpoint) != nil }
