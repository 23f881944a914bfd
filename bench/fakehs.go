package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// FakeHomeserver plays the homeserver side of the appservice API for the bridge, so
// that its own ceiling can be measured without Synapse: it answers the client-server
// calls bridgev2 makes (registering ghosts, creating rooms, sending events) from
// memory, and pushes transactions to the bridge as a homeserver would. It keeps no
// room state beyond which rooms exist and who created them.
type FakeHomeserver struct {
	URL        string
	ServerName string

	log      zerolog.Logger
	srv      *http.Server
	asURL    string
	hsToken  string
	botID    id.UserID
	client   *http.Client
	seq      atomic.Int64
	txnSeq   atomic.Int64
	sends    atomic.Int64
	requests atomic.Int64

	mu       sync.Mutex
	rooms    map[id.RoomID][]id.UserID // invitees at creation
	unknown  map[string]int
	onSend   func(room id.RoomID, sender id.UserID, content map[string]any, at time.Time)
	onCreate func(room id.RoomID, invitees []id.UserID)
}

// FakeHomeserverOptions configure the fake.
type FakeHomeserverOptions struct {
	ServerName string
	// BotLocalpart is the appservice's sender_localpart.
	BotLocalpart string
	// OnSend is called for every m.room.message the bridge sends (from any goroutine).
	OnSend func(room id.RoomID, sender id.UserID, content map[string]any, at time.Time)
	// OnCreate is called for every room the bridge creates.
	OnCreate func(room id.RoomID, invitees []id.UserID)
	Log      zerolog.Logger
}

// StartFakeHomeserver listens on a free 127.0.0.1 port. SetAppservice tells it where
// the bridge listens, once known.
func StartFakeHomeserver(o FakeHomeserverOptions) (*FakeHomeserver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to listen: %w", err)
	}
	hs := &FakeHomeserver{
		URL:        "http://" + l.Addr().String(),
		ServerName: o.ServerName,
		log:        o.Log,
		botID:      id.NewUserID(o.BotLocalpart, o.ServerName),
		client:     &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		rooms:      map[id.RoomID][]id.UserID{},
		unknown:    map[string]int{},
		onSend:     o.OnSend,
		onCreate:   o.OnCreate,
	}
	hs.srv = &http.Server{Handler: http.HandlerFunc(hs.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.srv.Serve(l) }()
	return hs, nil
}

// SetAppservice sets the bridge's appservice URL and the hs_token it expects.
func (hs *FakeHomeserver) SetAppservice(asURL, hsToken string) {
	hs.asURL, hs.hsToken = asURL, hsToken
}

// Close stops the listener.
func (hs *FakeHomeserver) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.srv.Shutdown(ctx)
}

// Unknown lists the request paths the fake answered with an empty object because it
// does not know them, with counts.
func (hs *FakeHomeserver) Unknown() map[string]int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	out := make(map[string]int, len(hs.unknown))
	for k, v := range hs.unknown {
		out[k] = v
	}
	return out
}

// Requests is how many client-server requests the bridge made.
func (hs *FakeHomeserver) Requests() int64 { return hs.requests.Load() }

// PushTransaction sends events to the bridge as one appservice transaction.
func (hs *FakeHomeserver) PushTransaction(ctx context.Context, events []map[string]any) error {
	body, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		return err
	}
	txn := fmt.Sprintf("bench%d", hs.txnSeq.Add(1))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, hs.asURL+"/_matrix/app/v1/transactions/"+txn, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+hs.hsToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hs.client.Do(req)
	if err != nil {
		return fmt.Errorf("failed to push a transaction: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the bridge answered the transaction with HTTP %d", resp.StatusCode)
	}
	return nil
}

// MessageEvent builds an m.room.message event from sender in room.
func (hs *FakeHomeserver) MessageEvent(room id.RoomID, sender id.UserID, body string) map[string]any {
	return map[string]any{
		"type": "m.room.message", "room_id": room, "sender": sender,
		"event_id":         fmt.Sprintf("$bench%d:%s", hs.seq.Add(1), hs.ServerName),
		"origin_server_ts": time.Now().UnixMilli(),
		"content":          map[string]any{"msgtype": "m.text", "body": body},
	}
}

// MemberEvent builds an m.room.member event (a join, say) for user in room.
func (hs *FakeHomeserver) MemberEvent(room id.RoomID, user id.UserID, membership string) map[string]any {
	return map[string]any{
		"type": "m.room.member", "room_id": room, "sender": user, "state_key": user,
		"event_id":         fmt.Sprintf("$bench%d:%s", hs.seq.Add(1), hs.ServerName),
		"origin_server_ts": time.Now().UnixMilli(),
		"content":          map[string]any{"membership": membership},
	}
}

func (hs *FakeHomeserver) newEventID() string {
	return fmt.Sprintf("$hs%d:%s", hs.seq.Add(1), hs.ServerName)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "not found"})
}

// asUser is whom the appservice acts as: ?user_id=, or the bot.
func (hs *FakeHomeserver) asUser(r *http.Request) id.UserID {
	if u := r.URL.Query().Get("user_id"); u != "" {
		return id.UserID(u)
	}
	return hs.botID
}

func (hs *FakeHomeserver) serve(w http.ResponseWriter, r *http.Request) {
	hs.requests.Add(1)
	at := time.Now()
	path := r.URL.EscapedPath()
	var parts []string
	for _, p := range strings.Split(strings.Trim(path, "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			u = p
		}
		parts = append(parts, u)
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	// Media lives under /_matrix/media and /_matrix/client/v1/media.
	if len(parts) < 3 || parts[0] != "_matrix" {
		hs.unknownPath(w, r)
		return
	}
	if parts[1] == "client" && parts[2] == "versions" {
		writeJSON(w, http.StatusOK, map[string]any{"versions": []string{"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"},
			"unstable_features": map[string]bool{}})
		return
	}
	if parts[1] != "client" || len(parts) < 4 {
		hs.unknownPath(w, r)
		return
	}
	rest := parts[3:] // after /_matrix/client/{v3,v1,r0,unstable}
	switch {
	case match(rest, "account", "whoami"):
		writeJSON(w, http.StatusOK, map[string]any{"user_id": hs.asUser(r), "device_id": "BENCH"})
	case match(rest, "register"):
		var req struct {
			Username string `json:"username"`
		}
		_ = json.Unmarshal(body, &req)
		writeJSON(w, http.StatusOK, map[string]any{"user_id": id.NewUserID(req.Username, hs.ServerName)})
	case match(rest, "appservice", "*", "ping"):
		writeJSON(w, http.StatusOK, map[string]any{"duration_ms": 1})
	case match(rest, "media", "config"), match(rest, "config"):
		writeJSON(w, http.StatusOK, map[string]any{"m.upload.size": 100 << 20})
	case match(rest, "profile", "*", "*") && r.Method == http.MethodPut:
		writeJSON(w, http.StatusOK, map[string]any{})
	case match(rest, "profile", "*") || match(rest, "profile", "*", "*"):
		notFound(w)
	case match(rest, "createRoom"):
		var req struct {
			Invite []id.UserID `json:"invite"`
		}
		_ = json.Unmarshal(body, &req)
		room := id.RoomID(fmt.Sprintf("!r%d:%s", hs.seq.Add(1), hs.ServerName))
		hs.mu.Lock()
		hs.rooms[room] = req.Invite
		hs.mu.Unlock()
		if hs.onCreate != nil {
			hs.onCreate(room, req.Invite)
		}
		writeJSON(w, http.StatusOK, map[string]any{"room_id": room})
	case match(rest, "join", "*"):
		writeJSON(w, http.StatusOK, map[string]any{"room_id": rest[1]})
	case match(rest, "rooms", "*", "join"):
		writeJSON(w, http.StatusOK, map[string]any{"room_id": rest[1]})
	case match(rest, "rooms", "*", "send", "*", "*"):
		hs.sends.Add(1)
		if rest[3] == event.EventMessage.Type && hs.onSend != nil {
			var content map[string]any
			_ = json.Unmarshal(body, &content)
			hs.onSend(id.RoomID(rest[1]), hs.asUser(r), content, at)
		}
		writeJSON(w, http.StatusOK, map[string]any{"event_id": hs.newEventID()})
	case match(rest, "rooms", "*", "state", "*", "*") && r.Method == http.MethodPut,
		match(rest, "rooms", "*", "state", "*") && r.Method == http.MethodPut,
		match(rest, "rooms", "*", "redact", "*", "*"):
		writeJSON(w, http.StatusOK, map[string]any{"event_id": hs.newEventID()})
	case match(rest, "rooms", "*", "state", event.StatePowerLevels.Type, ""), match(rest, "rooms", "*", "state", event.StatePowerLevels.Type):
		// Whoever asks may do everything: the bridge's bot and ghosts act in rooms it made.
		writeJSON(w, http.StatusOK, map[string]any{"users": map[string]int{hs.asUser(r).String(): 100, hs.botID.String(): 100},
			"users_default": 100, "events_default": 0, "state_default": 0, "invite": 0, "kick": 50, "ban": 50, "redact": 50})
	case match(rest, "capabilities"):
		writeJSON(w, http.StatusOK, map[string]any{"capabilities": map[string]any{}})
	case match(rest, "rooms", "*", "state", "*", "*"), match(rest, "rooms", "*", "state", "*"),
		match(rest, "rooms", "*", "event", "*"):
		notFound(w)
	case match(rest, "rooms", "*", "joined_members"):
		writeJSON(w, http.StatusOK, map[string]any{"joined": map[string]any{}})
	case match(rest, "rooms", "*", "members"):
		writeJSON(w, http.StatusOK, map[string]any{"chunk": []any{}})
	case match(rest, "rooms", "*", "state"):
		writeJSON(w, http.StatusOK, []any{})
	case match(rest, "rooms", "*", "invite"), match(rest, "rooms", "*", "leave"), match(rest, "rooms", "*", "kick"),
		match(rest, "rooms", "*", "receipt", "*", "*"), match(rest, "rooms", "*", "typing", "*"),
		match(rest, "rooms", "*", "read_markers"), match(rest, "user", "*", "account_data", "*"),
		match(rest, "user", "*", "rooms", "*", "account_data", "*"), match(rest, "presence", "*", "status"),
		match(rest, "directory", "room", "*"), match(rest, "directory", "list", "room", "*"):
		writeJSON(w, http.StatusOK, map[string]any{})
	case match(rest, "user", "*", "filter"):
		writeJSON(w, http.StatusOK, map[string]any{"filter_id": "1"})
	default:
		hs.unknownPath(w, r)
	}
}

// unknownPath answers 200 {} and counts the path with its variable parts elided.
func (hs *FakeHomeserver) unknownPath(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	hs.mu.Lock()
	first := hs.unknown[key] == 0
	hs.unknown[key]++
	hs.mu.Unlock()
	if first {
		hs.log.Debug().Str("method", r.Method).Str("path", r.URL.Path).Msg("Fake homeserver got an unknown request")
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// match says whether parts are pattern, "*" matching any one part.
func match(parts []string, pattern ...string) bool {
	if len(parts) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && p != parts[i] {
			return false
		}
	}
	return true
}
