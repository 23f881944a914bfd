package interop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// Config sets up a Client. Zero durations take the defaults, which follow PROTOCOL.md
// section 3.1; tests shorten them.
type Config struct {
	// Dial opens a connection to the gateway (required).
	Dial Dialer
	// Handler receives every event, from one goroutine, in order (see Event). It is
	// called with Run's context. It must not wait for Run to return.
	Handler func(ctx context.Context, evt Event)

	// PingInterval is the keep-alive period; the protocol wants 20-30 s. Default 25 s.
	PingInterval time.Duration
	// IQTimeout bounds the wait for an iq answer or a message ack. Default 10 s.
	IQTimeout time.Duration
	// IdleTimeout drops a connection that delivered no frame at all for this long,
	// even when the socket stays open. Default 60 s.
	IdleTimeout time.Duration
	// ConnectTimeout bounds dialing plus the wait for <success>. Default 30 s.
	ConnectTimeout time.Duration
	// Backoff paces reconnects (default 1 s doubling to 5 min, jittered). It is reset
	// after every connection that got to <success>.
	Backoff Backoff
}

const (
	defaultPingInterval   = 25 * time.Second
	defaultIQTimeout      = 10 * time.Second
	defaultIdleTimeout    = 60 * time.Second
	defaultConnectTimeout = 30 * time.Second
	// immediateReconnectGap is how long after a 515 reconnect another 515 is again
	// honoured at once.
	immediateReconnectGap = 10 * time.Second
)

// Client keeps one account's connection to the gateway: it connects, reconnects,
// keeps the connection alive, matches answers to requests and reports everything else
// as events. The upper layers (encryption, the bridge) sit on top of it.
type Client struct {
	cfg     Config
	cur     atomic.Pointer[conn]
	running atomic.Bool
	events  *eventQueue
}

// NewClient makes a Client; nothing happens until Run.
func NewClient(cfg Config) *Client {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = defaultPingInterval
	}
	if cfg.IQTimeout <= 0 {
		cfg.IQTimeout = defaultIQTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	cfg.Backoff.withDefaults()
	cfg.Backoff.Reset()
	return &Client{cfg: cfg}
}

// IsConnected reports whether a connection is live (past <success>).
func (c *Client) IsConnected() bool { return c.current() != nil }

func (c *Client) current() *conn {
	cn := c.cur.Load()
	if cn == nil || cn.ctx.Err() != nil {
		return nil
	}
	return cn
}

// Run connects and stays connected until ctx is done (then it returns nil) or a
// terminal condition: the connection was replaced (ErrReplaced), the account was
// logged out (ErrLoggedOut), or the gateway refused the login for good (an error
// wrapping the *errcode.Error of the <failure>; errors.Is(err, errcode.ErrUnauthorized)
// for bad credentials). Every other drop is followed by a reconnect with backoff.
// Run returns only after the last Handler call has returned.
func (c *Client) Run(ctx context.Context) error {
	if c.cfg.Dial == nil {
		return errors.New("interop: Config.Dial is required")
	}
	if !c.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer c.running.Store(false)

	c.events = newEventQueue()
	var dispatcher sync.WaitGroup
	dispatcher.Go(func() { c.events.dispatch(ctx, c.cfg.Handler) })
	defer dispatcher.Wait()
	defer c.events.close()

	log := zerolog.Ctx(ctx)
	backoff := c.cfg.Backoff
	var lastImmediate time.Time
	for {
		res := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if res.healthy {
			backoff.Reset()
		}
		if res.final != nil {
			c.emit(res.final)
		}
		if res.terminal {
			log.Warn().Err(res.err).Msg("Connection to the gateway ended for good")
			c.emit(&Disconnected{Err: res.err})
			return res.err
		}
		var delay time.Duration
		// A gateway asking for a reconnect again and again gets the backoff after
		// the first time, so a misbehaving one is not hammered.
		if res.immediate && time.Since(lastImmediate) > immediateReconnectGap {
			lastImmediate = time.Now()
		} else {
			delay = backoff.Next()
		}
		log.Info().Err(res.err).Dur("retry_in", delay).Msg("Disconnected from the gateway")
		c.emit(&Disconnected{Err: res.err, WillReconnect: true, RetryIn: delay})
		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
		}
	}
}

func (c *Client) emit(evt Event) { c.events.push(evt) }

// outcome is how one connection attempt ended.
type outcome struct {
	err       error
	healthy   bool  // it got to <success>
	terminal  bool  // Run must stop
	immediate bool  // reconnect without waiting (stream:error 515)
	final     Event // reported before Disconnected (Replaced, LoggedOut, ConnectFailure)
}

// session runs one connection from dial to drop.
func (c *Client) session(ctx context.Context) outcome {
	log := zerolog.Ctx(ctx)
	dialCtx, cancelDial := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancelDial()
	fc, err := c.cfg.Dial(dialCtx)
	if err != nil {
		return outcome{err: fmt.Errorf("failed to connect: %w", err)}
	}
	cn := newConn(ctx, fc)
	defer cn.drop(ErrDisconnected)

	first, err := cn.read(dialCtx)
	if err != nil {
		if dialCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no <success> within %s: %w", c.cfg.ConnectTimeout, err)
		}
		return c.readFailed(ctx, err)
	}
	switch first.Tag {
	case "success":
	case "failure", "stream:error":
		return c.terminalStanza(first)
	default:
		return outcome{err: fmt.Errorf("%w: %s before <success>", ErrUnexpectedStanza, first)}
	}
	cancelDial()

	connected := &Connected{New: first.Attr("new") == "1"}
	if t, err := first.AttrInt("t"); err == nil {
		connected.ServerTime = time.Unix(t, 0)
	}
	log.Info().Bool("new", connected.New).Msg("Connected to the gateway")
	c.cur.Store(cn)
	defer c.cur.CompareAndSwap(cn, nil)
	c.emit(connected)

	var watchers sync.WaitGroup
	watchers.Go(func() { c.pinger(cn) })
	watchers.Go(func() { c.watchIdle(cn) })
	defer watchers.Wait()
	defer cn.drop(ErrDisconnected)

	res := c.readLoop(cn)
	res.healthy = true
	return res
}

// readLoop reads and routes stanzas until the connection ends.
func (c *Client) readLoop(cn *conn) outcome {
	for {
		n, err := cn.read(cn.ctx)
		if err != nil {
			return c.readFailed(cn.ctx, err)
		}
		if res, stop := c.route(cn, n); stop {
			cn.drop(res.err)
			return res
		}
	}
}

// readFailed logs a bad frame without its content and turns it into a reconnect.
func (c *Client) readFailed(ctx context.Context, err error) outcome {
	var bad *badFrameError
	if errors.As(err, &bad) {
		zerolog.Ctx(ctx).Warn().Int("frame_len", bad.size).
			Bool("too_large", errors.Is(err, stanza.ErrTooLarge)).
			Msg("Undecodable frame from the gateway, reconnecting")
	}
	return outcome{err: err}
}

// route handles one stanza of a live connection; stop is set when it ends it.
func (c *Client) route(cn *conn, n stanza.Node) (res outcome, stop bool) {
	log := zerolog.Ctx(cn.ctx)
	switch n.Tag {
	case "iq":
		if t := n.Attr("type"); t == "result" || t == "error" {
			if !cn.resolve(pendingKey{answerIQ, n.Attr("id")}, n) {
				log.Debug().Stringer("stanza", n).Msg("Dropping iq answer nobody waits for")
			}
			return outcome{}, false
		}
		c.emit(&UnhandledStanza{Node: n})
	case "ack":
		if n.Attr("class") == "message" && cn.resolve(pendingKey{answerMessageAck, n.Attr("id")}, n) {
			return outcome{}, false
		}
		log.Debug().Stringer("stanza", n).Msg("Dropping ack nobody waits for")
	case "message":
		c.emit(&IncomingMessage{Node: n})
	case "receipt":
		c.emit(&IncomingReceipt{Node: n})
	case "notification":
		info, err := ParseNotification(n)
		c.emit(&IncomingNotification{Node: n, Info: info, Err: err})
	case "chatstate":
		c.emit(&IncomingChatState{Node: n})
	case "ib":
		if off, ok := n.Child("offline"); ok {
			count, err := off.AttrInt("count")
			if err != nil {
				log.Warn().Err(err).Msg("Offline marker without a valid count")
			}
			c.emit(&OfflineDone{Count: int(count)})
			return outcome{}, false
		}
		c.emit(&IncomingIB{Node: n})
	case "stream:error", "failure":
		res := c.terminalStanza(n)
		res.healthy = true
		return res, true
	case "success":
		log.Debug().Msg("Ignoring a second <success>")
	default:
		c.emit(&UnhandledStanza{Node: n})
	}
	return outcome{}, false
}

// terminalStanza turns a <stream:error> or <failure> into how the connection ends.
func (c *Client) terminalStanza(n stanza.Node) outcome {
	if n.Tag == "failure" {
		code := n.Attr("code")
		reason := n.Attr("reason")
		// The protocol puts the code in reason (<failure reason="401"/>); a
		// non-numeric reason is a detail such as "region".
		if isDigits(reason) {
			if code == "" {
				code = reason
			}
			reason = ""
		}
		if reason == "" {
			reason = n.Attr("detail")
		}
		refusal := errcode.Parse(code, n.Attr("text"), reason, n.Attr("retry_after"))
		err := fmt.Errorf("gateway refused the login: %w", refusal)
		terminal := refusal.Code >= 400 && refusal.Code < 500 && refusal.Code != 429
		return outcome{err: err, terminal: terminal, final: &ConnectFailure{Err: refusal}}
	}
	se := &StreamError{}
	if code, err := n.AttrInt("code"); err == nil {
		se.Code = int(code)
	}
	if conflict, ok := n.Child("conflict"); ok {
		se.Conflict = conflict.Attr("type")
		if se.Conflict == "" {
			se.Conflict = "replaced"
		}
		return outcome{err: fmt.Errorf("%w: %w", ErrReplaced, se), terminal: true, final: &Replaced{}}
	}
	switch se.Code {
	case 401:
		return outcome{err: fmt.Errorf("%w: %w", ErrLoggedOut, se), terminal: true, final: &LoggedOut{}}
	case 515:
		return outcome{err: se, immediate: true}
	}
	return outcome{err: se}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
