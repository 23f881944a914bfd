package kit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Helpers for the feature and failure tests: what a Matrix client sends and sees
// besides plain text (formatting, replies, edits, reactions, redactions, receipts,
// typing, message status), and the control API calls that drive the Meta side.

// Send sends any message content and returns its event ID.
func (u *User) Send(ctx context.Context, room id.RoomID, content *event.MessageEventContent) (id.EventID, error) {
	resp, err := u.Client.SendMessageEvent(ctx, room, event.EventMessage, content)
	if err != nil {
		return "", fmt.Errorf("failed to send a message to %s: %w", room, err)
	}
	return resp.EventID, nil
}

// SendHTML sends an m.text with body and an HTML formatted body.
func (u *User) SendHTML(ctx context.Context, room id.RoomID, body, html string) (id.EventID, error) {
	return u.Send(ctx, room, &event.MessageEventContent{MsgType: event.MsgText, Body: body,
		Format: event.FormatHTML, FormattedBody: html})
}

// React sends an m.reaction with key to target.
func (u *User) React(ctx context.Context, room id.RoomID, target id.EventID, key string) (id.EventID, error) {
	resp, err := u.Client.SendReaction(ctx, room, target, key)
	if err != nil {
		return "", fmt.Errorf("failed to react to %s: %w", target, err)
	}
	return resp.EventID, nil
}

// Redact redacts target.
func (u *User) Redact(ctx context.Context, room id.RoomID, target id.EventID) (id.EventID, error) {
	resp, err := u.Client.RedactEvent(ctx, room, target)
	if err != nil {
		return "", fmt.Errorf("failed to redact %s: %w", target, err)
	}
	return resp.EventID, nil
}

// rawContent decodes an event's content as JSON, whatever the syncer parsed.
func rawContent(evt *event.Event, out any) bool {
	return json.Unmarshal(evt.Content.VeryRaw, out) == nil
}

// IsEdit matches an m.replace of target in room from sender whose new body is body.
func IsEdit(room id.RoomID, sender id.UserID, target id.EventID, body string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EventMessage || evt.RoomID != room || evt.Sender != sender {
			return false
		}
		msg := evt.Content.AsMessage()
		return msg.RelatesTo != nil && msg.RelatesTo.Type == event.RelReplace && msg.RelatesTo.EventID == target &&
			msg.NewContent != nil && msg.NewContent.Body == body
	}
}

// IsReaction matches an m.reaction in room from sender on target with key.
func IsReaction(room id.RoomID, sender id.UserID, target id.EventID, key string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EventReaction || evt.RoomID != room || evt.Sender != sender {
			return false
		}
		var c struct {
			RelatesTo struct {
				RelType string     `json:"rel_type"`
				EventID id.EventID `json:"event_id"`
				Key     string     `json:"key"`
			} `json:"m.relates_to"`
		}
		return rawContent(evt, &c) && c.RelatesTo.RelType == "m.annotation" && c.RelatesTo.EventID == target &&
			c.RelatesTo.Key == key
	}
}

// IsRedaction matches the redaction of target in room by sender (anyone when empty).
func IsRedaction(room id.RoomID, sender id.UserID, target id.EventID) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EventRedaction || evt.RoomID != room || (sender != "" && evt.Sender != sender) {
			return false
		}
		if evt.Redacts == target {
			return true
		}
		var c struct {
			Redacts id.EventID `json:"redacts"`
		}
		return rawContent(evt, &c) && c.Redacts == target
	}
}

// MessageStatus is the content of a com.beeper.message_send_status event.
type MessageStatus struct {
	RelatesTo struct {
		RelType string     `json:"rel_type"`
		EventID id.EventID `json:"event_id"`
	} `json:"m.relates_to"`
	Status           string       `json:"status"`
	Reason           string       `json:"reason"`
	Message          string       `json:"message"`
	DeliveredToUsers *[]id.UserID `json:"delivered_to_users"`
}

// ParseMessageStatus reads a message status event, false for other events.
func ParseMessageStatus(evt *event.Event) (*MessageStatus, bool) {
	if evt.Type != event.BeeperMessageStatus {
		return nil, false
	}
	var ms MessageStatus
	if !rawContent(evt, &ms) {
		return nil, false
	}
	return &ms, true
}

// IsMessageStatus matches a message status event in room about source whose status is
// status (any when empty).
func IsMessageStatus(room id.RoomID, source id.EventID, status string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.RoomID != room {
			return false
		}
		ms, ok := ParseMessageStatus(evt)
		return ok && ms.RelatesTo.RelType == "m.reference" && ms.RelatesTo.EventID == source &&
			(status == "" || ms.Status == status)
	}
}

// IsDeliveredTo matches a message status about source that says it reached user.
func IsDeliveredTo(room id.RoomID, source id.EventID, user id.UserID) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if !IsMessageStatus(room, source, "SUCCESS")(evt) {
			return false
		}
		ms, _ := ParseMessageStatus(evt)
		return ms.DeliveredToUsers != nil && slices.Contains(*ms.DeliveredToUsers, user)
	}
}

// IsReadReceipt matches an m.receipt in room saying user read target.
func IsReadReceipt(room id.RoomID, user id.UserID, target id.EventID) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EphemeralEventReceipt || evt.RoomID != room {
			return false
		}
		var c map[id.EventID]map[string]map[id.UserID]json.RawMessage
		if !rawContent(evt, &c) {
			return false
		}
		_, ok := c[target]["m.read"][user]
		return ok
	}
}

// IsTyping matches an m.typing in room whose typing users include user, or, with
// typing false, do not.
func IsTyping(room id.RoomID, user id.UserID, typing bool) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EphemeralEventTyping || evt.RoomID != room {
			return false
		}
		var c struct {
			UserIDs []id.UserID `json:"user_ids"`
		}
		return rawContent(evt, &c) && slices.Contains(c.UserIDs, user) == typing
	}
}

// Fault adds a gateway fault (POST /v1/faults): kind and its options.
func (m *Metasim) Fault(ctx context.Context, endpoint, kind string, opts map[string]any) error {
	body := map[string]any{"endpoint": endpoint, "kind": kind}
	for k, v := range opts {
		body[k] = v
	}
	if err := m.Call(ctx, http.MethodPost, "/v1/faults", body, nil); err != nil {
		return fmt.Errorf("failed to add a %s fault for %s: %w", kind, endpoint, err)
	}
	return nil
}

// ClearFaults ends every fault of endpoint.
func (m *Metasim) ClearFaults(ctx context.Context, endpoint string) error {
	return m.Call(ctx, http.MethodDelete, "/v1/faults?endpoint="+endpoint, nil, nil)
}

// Typing sends a chat state (composing, recording, paused) to a third-party account.
func (u *SimUser) Typing(ctx context.Context, to, state string) error {
	return u.m.Call(ctx, http.MethodPost, "/v1/users/"+u.JID+"/typing", map[string]any{"to": to, "state": state}, nil)
}

// Receipt sends a receipt (read, played, delivered) for messages of chat.
func (u *SimUser) Receipt(ctx context.Context, chat, typ string, ids ...string) error {
	return u.m.Call(ctx, http.MethodPost, "/v1/users/"+u.JID+"/receipts", map[string]any{"chat": chat, "ids": ids, "type": typ}, nil)
}

// SetOptIn replaces the integrators the user allows ([] turns third-party chats off).
func (u *SimUser) SetOptIn(ctx context.Context, integrators ...int) error {
	if integrators == nil {
		integrators = []int{}
	}
	return u.m.Call(ctx, http.MethodPut, "/v1/users/"+u.JID+"/opt-in", map[string]any{"integrators": integrators}, nil)
}

// ResetIdentity gives the user's phone a new Signal identity, as a reinstall does.
func (u *SimUser) ResetIdentity(ctx context.Context) error {
	return u.m.Call(ctx, http.MethodPost, "/v1/users/"+u.JID+"/reset-identity", nil, nil)
}

// SimUserInfo is the control API's view of a simulated user.
type SimUserInfo struct {
	JID        string `json:"jid"`
	OptIn      []int  `json:"opt_in"`
	Restricted *struct {
		Reason string    `json:"reason"`
		Until  time.Time `json:"until"`
	} `json:"restricted"`
}

// Info reads the user as the simulator sees it.
func (u *SimUser) Info(ctx context.Context) (*SimUserInfo, error) {
	var info SimUserInfo
	if err := u.m.Call(ctx, http.MethodGet, "/v1/users/"+u.JID, nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Unrestrict lifts a restriction of the user.
func (u *SimUser) Unrestrict(ctx context.Context) error {
	return u.m.Call(ctx, http.MethodDelete, "/v1/users/"+u.JID+"/restrict", nil, nil)
}

// ItemData returns an inbox item's data object.
func ItemData(item map[string]any) map[string]any {
	data, _ := item["data"].(map[string]any)
	if data == nil {
		return map[string]any{}
	}
	return data
}

// ItemKey returns a map field of an inbox item's data (target, reply_to).
func ItemKey(item map[string]any, field string) map[string]any {
	m, _ := ItemData(item)[field].(map[string]any)
	if m == nil {
		return map[string]any{}
	}
	return m
}

// ExecSQLite runs one statement on the bridge's SQLite database (stop the bridge
// first) and returns the rows it changed: for breaking the bridge's state on purpose.
func (b *Bridge) ExecSQLite(ctx context.Context, query string, args ...any) (int64, error) {
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(b.Dir, "bridge.db")+"?_txlock=immediate")
	if err != nil {
		return 0, fmt.Errorf("failed to open the bridge's database: %w", err)
	}
	defer db.Close()
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("failed to run %q on the bridge's database: %w", query, err)
	}
	return res.RowsAffected()
}
