// Package metrics is the bridge's Prometheus instrumentation: one registry per
// connector (never the process-wide default one), the collectors the connector feeds,
// and the HTTP listener that serves them at /metrics.
//
// Labels are the network and small fixed sets of kinds, states and codes only: never
// a phone number, JID, room or message content, for privacy and so the number of
// series stays bounded. It must not import the connector.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

const namespace = "metainterop"

// Connection states of the connections gauge.
const (
	StateConnected    = "connected"    // past the gateway's <success>
	StateConnecting   = "connecting"   // the run loop is dialing or waiting to redial
	StateDisconnected = "disconnected" // no run loop: stopped, logged out or replaced
)

// Directions of the messages counter.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

// Connection is one login as the connections gauge counts it.
type Connection struct {
	Network string
	State   string
}

// QueueDepths are the rows waiting in the bridge's durable queues.
type QueueDepths struct {
	// Incoming counts received messages in the outbox not yet bridged to Matrix.
	Incoming int
	// Transactions counts Matrix events received from the homeserver and not yet
	// handled.
	Transactions int
}

// Sources are read at every scrape.
type Sources struct {
	// Networks are the enabled networks; each gets every state, zero included, so a
	// dashboard sees a drop to zero rather than a missing series.
	Networks []string
	// Connections lists every login's state.
	Connections func() []Connection
	// QueueDepths counts the queues; nil leaves the queue gauges out.
	QueueDepths func(ctx context.Context) (QueueDepths, error)
	// Log receives errors met while collecting.
	Log zerolog.Logger
}

// Metrics holds the collectors. A nil *Metrics records nothing, so code paths that
// run without metrics (tests, tools) need no checks.
type Metrics struct {
	// Registry holds this bridge's collectors and nothing else.
	Registry *prometheus.Registry

	messages        *prometheus.CounterVec
	sendFailures    *prometheus.CounterVec
	decryptFailures *prometheus.CounterVec
	outgoing        *prometheus.HistogramVec
	incoming        *prometheus.HistogramVec
}

// latencyBuckets span a fast local bridge (a few ms) to a send retried for minutes.
func latencyBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}
}

// New makes the collectors and registers them, with the Go runtime and process
// collectors, in a new registry.
func New(src Sources) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "messages_total",
			Help: "Messages bridged, by network, direction (in: from Meta, out: to Meta) and type.",
		}, []string{"network", "direction", "type"}),
		sendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "send_failures_total",
			Help: "Messages to Meta that failed for good, by network and error code (the gateway's code, or not_connected, no_devices, timeout, other).",
		}, []string{"network", "code"}),
		decryptFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "decrypt_failures_total",
			Help: "Received messages that did not decrypt (each attempt; a retry receipt asks the sender again), by network.",
		}, []string{"network"}),
		outgoing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "outgoing_latency_seconds",
			Help:    "Time from the bridge taking a Matrix event to the gateway's ack of the message, by network.",
			Buckets: latencyBuckets(),
		}, []string{"network"}),
		incoming: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "incoming_latency_seconds",
			Help:    "Time from a message stanza's arrival to its Matrix event, by network.",
			Buckets: latencyBuckets(),
		}, []string{"network"}),
	}
	m.Registry.MustRegister(
		m.messages, m.sendFailures, m.decryptFailures, m.outgoing, m.incoming,
		newStateCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// MessageIn counts a message received from Meta and, when latency is positive, how
// long it took to reach Matrix.
func (m *Metrics) MessageIn(network, typ string, latency time.Duration) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(network, DirectionIn, typ).Inc()
	if latency > 0 {
		m.incoming.WithLabelValues(network).Observe(latency.Seconds())
	}
}

// MessageOut counts a message the gateway accepted and how long it took.
func (m *Metrics) MessageOut(network, typ string, latency time.Duration) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(network, DirectionOut, typ).Inc()
	m.outgoing.WithLabelValues(network).Observe(latency.Seconds())
}

// SendFailed counts a message to Meta that failed with code.
func (m *Metrics) SendFailed(network, code string) {
	if m == nil {
		return
	}
	m.sendFailures.WithLabelValues(network, code).Inc()
}

// DecryptFailed counts a received message that did not decrypt.
func (m *Metrics) DecryptFailed(network string) {
	if m == nil {
		return
	}
	m.decryptFailures.WithLabelValues(network).Inc()
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Server is the metrics listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Serve listens on addr (host:port) and serves /metrics until Stop. The listener is
// open when it returns, so a port in use fails here, not later.
func (m *Metrics) Serve(addr string, log zerolog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("failed to listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Err(err).Msg("Metrics listener stopped")
		}
	}()
	log.Info().Stringer("address", ln.Addr()).Msg("Serving Prometheus metrics at /metrics")
	return s, nil
}

// Addr is the address the listener got (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stop closes the listener, lets running scrapes finish within ctx, and waits for
// the serving goroutine.
func (s *Server) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// stateCollector reads connections and queue depths at scrape time, so they are
// never stale and need no bookkeeping on every change.
type stateCollector struct {
	src                                  Sources
	connections, incomingQueue, txnQueue *prometheus.Desc
}

func newStateCollector(src Sources) *stateCollector {
	return &stateCollector{
		src: src,
		connections: prometheus.NewDesc(namespace+"_connections",
			"Logins by network and connection state (connected, connecting, disconnected).",
			[]string{"network", "state"}, nil),
		incomingQueue: prometheus.NewDesc(namespace+"_incoming_queue_depth",
			"Received messages in the outbox not yet bridged to Matrix.", nil, nil),
		txnQueue: prometheus.NewDesc(namespace+"_appservice_unhandled_events",
			"Matrix events received from the homeserver and not yet handled.", nil, nil),
	}
}

// queueTimeout bounds the database queries of one scrape.
const queueTimeout = 5 * time.Second

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connections
	if c.src.QueueDepths != nil {
		ch <- c.incomingQueue
		ch <- c.txnQueue
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := make(map[Connection]int)
	for _, network := range c.src.Networks {
		for _, state := range []string{StateConnected, StateConnecting, StateDisconnected} {
			counts[Connection{Network: network, State: state}] = 0
		}
	}
	if c.src.Connections != nil {
		for _, conn := range c.src.Connections() {
			counts[conn]++
		}
	}
	for conn, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.connections, prometheus.GaugeValue, float64(n), conn.Network, conn.State)
	}
	if c.src.QueueDepths == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), queueTimeout)
	defer cancel()
	depths, err := c.src.QueueDepths(ctx)
	if err != nil {
		c.src.Log.Err(err).Msg("Failed to count the queues for metrics")
		ch <- prometheus.NewInvalidMetric(c.incomingQueue, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.incomingQueue, prometheus.GaugeValue, float64(depths.Incoming))
	ch <- prometheus.MustNewConstMetric(c.txnQueue, prometheus.GaugeValue, float64(depths.Transactions))
}
