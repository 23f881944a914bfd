package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// scrape fetches /metrics and returns each series (name with its labels, as the text
// format prints them) with its value.
func scrape(t *testing.T, url string) (map[string]float64, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d, %v", resp.StatusCode, err)
	}
	series := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: bad line %q", line)
		}
		series[line[:i]] = v
	}
	return series, string(body)
}

// waitSeries scrapes until cond holds for the series.
func waitSeries(t *testing.T, url, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	var got map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, _ = scrape(t, url)
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A login against the simulator, scraped over HTTP: the connection, a message each way,
// two refused sends, a message that did not decrypt and the outbox depth all show, and
// no series names a phone number.
func TestMetricsAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	env, q := sb.env, sb.q
	srv, err := sb.c.metrics.Serve("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	url := "http://" + srv.Addr().String() + "/metrics"

	const number = "491701234571"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := networkid.UserLoginID(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	waitSeries(t, url, "the connected login", func(s map[string]float64) bool {
		return s[`metainterop_connections{network="whatsapp",state="connected"}`] == 1 &&
			s[`metainterop_connections{network="messenger",state="connected"}`] == 0
	})
	waitFor(t, "keys on the gateway", func() bool {
		var acc struct {
			HasKeys bool `json:"has_keys"`
		}
		return env.Call(t, "GET", "/v1/accounts/"+account.String()+"?network=whatsapp", nil, &acc) == 200 && acc.HasKeys
	})
	var p struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876504", "opt_in": []int{simtest.IntegratorID}}, &p)
	peer, _ := jid.Parse(p.JID)
	send := func(text string) {
		env.MustCall(t, 200, "POST", "/v1/users/"+peer.String()+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": text}, nil)
	}

	// In.
	send("hello")
	first := q.next(t)
	waitSeries(t, url, "the incoming message", func(s map[string]float64) bool {
		return s[`metainterop_messages_total{direction="in",network="whatsapp",type="text"}`] == 1 &&
			s[`metainterop_incoming_latency_seconds_count{network="whatsapp"}`] == 1
	})

	// Out, then refused twice: a user without third-party chats, and a gateway 406.
	client := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)
	sendMatrix := func(to networkid.PortalKey) error {
		_, err := client.HandleMatrixMessage(ctx, &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
			Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "hi back"},
			Portal:  &bridgev2.Portal{Portal: &database.Portal{PortalKey: to}},
		}})
		return err
	}
	if err := sendMatrix(first.PortalKey); err != nil {
		t.Fatal(err)
	}
	var closed struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491705555556"}, &closed)
	closedJID, _ := jid.Parse(closed.JID)
	if err := sendMatrix(ids.MakePortalKey(closedJID, loginID)); err == nil {
		t.Fatal("send to a user without third-party chats succeeded")
	}
	env.MustCall(t, 200, "POST", "/v1/faults", map[string]any{"endpoint": account.String(), "kind": "refuse", "code": 406}, nil)
	if err := sendMatrix(first.PortalKey); err == nil {
		t.Fatal("refused send succeeded")
	}
	s := waitSeries(t, url, "the sends", func(s map[string]float64) bool {
		return s[`metainterop_messages_total{direction="out",network="whatsapp",type="text"}`] == 1
	})
	for series, want := range map[string]float64{
		`metainterop_outgoing_latency_seconds_count{network="whatsapp"}`:        1,
		`metainterop_send_failures_total{code="no_devices",network="whatsapp"}`: 1,
		`metainterop_send_failures_total{code="406",network="whatsapp"}`:        1,
	} {
		if s[series] != want {
			t.Errorf("%s = %v, want %v", series, s[series], want)
		}
	}

	// A message that does not decrypt (the bridge lost its session).
	stored, err := sb.c.Store.GetAccount(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.c.Store.StoreFor(stored).DeleteSessionsOf(ctx, peer.SignalName()); err != nil {
		t.Fatal(err)
	}
	send("lost")
	waitSeries(t, url, "the decryption failure", func(s map[string]float64) bool {
		return s[`metainterop_decrypt_failures_total{network="whatsapp"}`] >= 1 &&
			s[`metainterop_messages_total{direction="in",network="whatsapp",type="undecryptable"}`] >= 1
	})

	// Queue depths come from the database: a row no login takes out of the outbox
	// stays counted (the message sent again after the failure passes through it too,
	// so the depth settles rather than holding at once).
	if err := sb.c.DB.PutIncoming(ctx, &bridgedb.Incoming{LoginID: "whatsapp:1-491700000000", Chat: peer.String(),
		Sender: peer.String(), StanzaID: "PENDING", Type: "text"}); err != nil {
		t.Fatal(err)
	}
	waitSeries(t, url, "the outbox depth", func(s map[string]float64) bool {
		_, txn := s["metainterop_appservice_unhandled_events"]
		return s["metainterop_incoming_queue_depth"] == 1 && txn
	})
	_, body := scrape(t, url)
	for _, private := range []string{number, peer.User, closedJID.User, "hello", "hi back"} {
		if strings.Contains(body, private) {
			t.Errorf("metrics mention %q", private)
		}
	}
}

// metrics.enabled opens the listener in Start and Stop closes it; disabled, nothing
// listens.
func TestMetricsListenerFollowsStartAndStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := newTestConnector(t, func(nc *config.NetworkConfig) {
		nc.Metrics = config.MetricsConfig{Enabled: true, Listen: addr}
	})
	newTestBridge(t, sqltest.SQLite(t), c)
	s, body := scrape(t, "http://"+addr+"/metrics")
	if _, ok := s[`metainterop_connections{network="whatsapp",state="connected"}`]; !ok {
		t.Errorf("no connections gauge in\n%s", body)
	}
	if _, ok := s["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	c.Stop()
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatal("metrics still served after Stop")
	}

	off := newTestConnector(t, nil)
	newTestBridge(t, sqltest.SQLite(t), off)
	if off.metricsServer != nil {
		t.Error("metrics served while disabled")
	}
	off.Stop() // nothing to stop
}

// Labels come from small fixed sets, never from the message or the peer.
func TestMetricLabels(t *testing.T) {
	for _, tc := range []struct {
		msg  *waE2E.Message
		want string
	}{
		{nil, "undecryptable"},
		{&waE2E.Message{Conversation: proto.String("hi")}, "text"},
		{&waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("hi")}}, "text"},
		{&waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Text: proto.String("👍")}}, "reaction"},
		{&waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum()}}, "edit"},
		{&waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum()}}, "revoke"},
		{&waE2E.Message{ImageMessage: &waE2E.ImageMessage{}}, "media"},
		{&waE2E.Message{}, "other"},
	} {
		if got := messageType(tc.msg); got != tc.want {
			t.Errorf("messageType(%v) = %q, want %q", tc.msg, got, tc.want)
		}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("failed: %w", &errcode.Error{Code: 429}), "429"},
		{fmt.Errorf("failed: %w", interop.ErrNoDevices), "no_devices"},
		{fmt.Errorf("failed: %w", interop.ErrNotConnected), "not_connected"},
		{fmt.Errorf("failed: %w", context.DeadlineExceeded), "timeout"},
		{errors.New("491701234567 said no"), "other"},
	} {
		if got := sendFailureCode(tc.err); got != tc.want {
			t.Errorf("sendFailureCode(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
