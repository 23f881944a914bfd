package kit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// User is a Matrix user on the kit's Synapse, seen through the client-server API as
// a real client would: it syncs in the background, joins every room it is invited to,
// and keeps every event it received for the Wait helpers.
type User struct {
	ID       id.UserID
	Password string
	Client   *mautrix.Client

	// noAutoJoin stops the client from joining rooms it is invited to.
	noAutoJoin atomic.Bool

	mu      sync.Mutex
	events  []*event.Event
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewUser registers localpart on Synapse and starts its sync loop; Close stops it.
func (s *Synapse) NewUser(ctx context.Context, localpart string, admin bool) (*User, error) {
	return s.newUser(ctx, localpart, admin, "")
}

// NewCryptoUser is NewUser for a client with end-to-end encryption (goolm): it
// encrypts what it sends to encrypted rooms and decrypts what it receives, keeping
// its keys in a SQLite file in dir.
func (s *Synapse) NewCryptoUser(ctx context.Context, localpart, dir string) (*User, error) {
	return s.newUser(ctx, localpart, false, dir)
}

func (s *Synapse) newUser(ctx context.Context, localpart string, admin bool, cryptoDir string) (*User, error) {
	password := "pw-" + randomHex(8)
	token, deviceID, err := s.registerUser(ctx, localpart, password, admin)
	if err != nil {
		return nil, err
	}
	userID := id.NewUserID(localpart, s.ServerName)
	client, err := mautrix.NewClient(s.URL, userID, token)
	if err != nil {
		return nil, err
	}
	client.DeviceID = id.DeviceID(deviceID)
	client.Log = zerolog.Nop()
	client.Client = &http.Client{Timeout: 90 * time.Second}
	u := &User{ID: userID, Password: password, Client: client, changed: make(chan struct{})}
	if cryptoDir != "" {
		helper, err := cryptohelper.NewCryptoHelper(client, []byte("e2e-kit-pickle-key"), filepath.Join(cryptoDir, localpart+"-crypto.db"))
		if err != nil {
			return nil, fmt.Errorf("failed to set up encryption for %s: %w", localpart, err)
		}
		if err := helper.Init(ctx); err != nil {
			return nil, fmt.Errorf("failed to set up encryption for %s: %w", localpart, err)
		}
		client.Crypto = helper
	}
	syncer := client.Syncer.(*mautrix.DefaultSyncer)
	syncer.ParseErrorHandler = func(*event.Event, error) bool { return true }
	syncer.OnEvent(u.record)
	syncer.OnEventType(event.StateMember, func(ctx context.Context, evt *event.Event) {
		if evt.GetStateKey() == userID.String() && evt.Content.AsMember().Membership == event.MembershipInvite &&
			evt.Mautrix.EventSource&event.SourceInvite != 0 && !u.noAutoJoin.Load() {
			go u.join(evt.RoomID)
		}
	})
	syncCtx, cancel := context.WithCancel(context.Background())
	u.cancel, u.done = cancel, make(chan struct{})
	go func() {
		defer close(u.done)
		for syncCtx.Err() == nil {
			if err := client.SyncWithContext(syncCtx); err != nil && syncCtx.Err() == nil {
				time.Sleep(500 * time.Millisecond)
			}
		}
	}()
	return u, nil
}

// SetAutoJoin says whether the client joins the rooms it is invited to (the default).
func (u *User) SetAutoJoin(on bool) { u.noAutoJoin.Store(!on) }

func (u *User) join(roomID id.RoomID) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		if _, err := u.Client.JoinRoomByID(ctx, roomID); err == nil {
			return
		}
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
	}
}

func (u *User) record(_ context.Context, evt *event.Event) {
	u.mu.Lock()
	u.events = append(u.events, evt)
	close(u.changed)
	u.changed = make(chan struct{})
	u.mu.Unlock()
}

// Close stops the sync loop.
func (u *User) Close() {
	u.cancel()
	<-u.done
}

// Events returns every event received so far that match accepts.
func (u *User) Events(match func(*event.Event) bool) []*event.Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []*event.Event
	for _, evt := range u.events {
		if match == nil || match(evt) {
			out = append(out, evt)
		}
	}
	return out
}

// ErrTimeout is wrapped when a Wait helper gives up.
var ErrTimeout = errors.New("timed out")

// WaitEvent waits until an event that match accepts has been received (including
// before the call), and returns the first one. The error describes what was awaited
// and the latest events seen.
func (u *User) WaitEvent(ctx context.Context, timeout time.Duration, what string, match func(*event.Event) bool) (*event.Event, error) {
	return u.WaitEventAfter(ctx, 0, timeout, what, match)
}

// Mark is a position in the received events, for waiting only for newer ones.
func (u *User) Mark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.events)
}

// WaitEventAfter is WaitEvent for events received after mark.
func (u *User) WaitEventAfter(ctx context.Context, mark int, timeout time.Duration, what string, match func(*event.Event) bool) (*event.Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	next := mark
	for {
		u.mu.Lock()
		for ; next < len(u.events); next++ {
			if match(u.events[next]) {
				evt := u.events[next]
				u.mu.Unlock()
				return evt, nil
			}
		}
		changed := u.changed
		u.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			return nil, fmt.Errorf("%s: %s did not see %s within %s; latest events:\n%s", ErrTimeout, u.ID, what, timeout, u.describeLatest(mark, 15))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// describeLatest lists the last n events after mark, one line each.
func (u *User) describeLatest(mark, n int) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	evts := u.events[mark:]
	if len(evts) > n {
		evts = evts[len(evts)-n:]
	}
	var b strings.Builder
	for _, evt := range evts {
		fmt.Fprintf(&b, "  %s %s from %s in %s: %s\n", evt.Type.Type, evt.ID, evt.Sender, evt.RoomID, truncate(string(evt.Content.VeryRaw), 200))
	}
	if b.Len() == 0 {
		return "  (none)"
	}
	return b.String()
}

// IsMessage matches room messages in room whose body is body (any body when empty).
func IsMessage(room id.RoomID, sender id.UserID, body string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.Type != event.EventMessage || evt.RoomID != room || (sender != "" && evt.Sender != sender) {
			return false
		}
		msg := evt.Content.AsMessage()
		return body == "" || msg.Body == body
	}
}

// SendText sends a plain m.text message and returns its event ID.
func (u *User) SendText(ctx context.Context, room id.RoomID, text string) (id.EventID, error) {
	resp, err := u.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: text,
	})
	if err != nil {
		return "", fmt.Errorf("failed to send text to %s: %w", room, err)
	}
	return resp.EventID, nil
}

// JoinedMembers lists who has joined room.
func (u *User) JoinedMembers(ctx context.Context, room id.RoomID) ([]id.UserID, error) {
	resp, err := u.Client.JoinedMembers(ctx, room)
	if err != nil {
		return nil, err
	}
	var out []id.UserID
	for member := range resp.Joined {
		out = append(out, member)
	}
	return out, nil
}
