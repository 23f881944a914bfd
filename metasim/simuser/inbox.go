package simuser

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// VersionTable is the dbutil version table of this package's schema.
const VersionTable = "metasim_simuser_version"

//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// Kind is what an inbox item is.
type Kind string

const (
	KindText      Kind = "text"      // conversation or extendedTextMessage
	KindLocation  Kind = "location"  // locationMessage
	KindMedia     Kind = "media"     // image, video, audio, voice note or document
	KindReaction  Kind = "reaction"  // set or removed (Data.Removed)
	KindEdit      Kind = "edit"      // protocolMessage MESSAGE_EDIT
	KindRevoke    Kind = "revoke"    // protocolMessage REVOKE
	KindUnknown   Kind = "unknown"   // decrypted, but no content this simulator knows
	KindError     Kind = "error"     // a message that could not be decrypted
	KindReceipt   Kind = "receipt"   // delivered, read or played, for a message we sent
	KindChatState Kind = "chatstate" // composing, recording or paused
	KindIdentity  Kind = "identity"  // a peer's identity key (safety number) changed
	KindGroup     Kind = "group"     // a group change (w:gp2 notification)
	// KindRestriction: the gateway restricted this user after spam reports.
	KindRestriction Kind = "restriction"
)

// Item is one thing a device received.
type Item struct {
	Seq    int64   `json:"seq"`
	User   jid.JID `json:"user"`
	Device jid.JID `json:"device"`
	Kind   Kind    `json:"kind"`
	// ID is the message's id; for a receipt the id of the message it is about.
	ID   string  `json:"id,omitempty"`
	Chat jid.JID `json:"chat"` // the peer user, or the group
	// Sender is the sending device (messages, receipts), or the user (chat states,
	// identity changes, group changes: the actor).
	Sender     jid.JID   `json:"sender"`
	Timestamp  time.Time `json:"timestamp"` // the stanza's t; zero when it had none
	ReceivedAt time.Time `json:"received_at"`
	Data       ItemData  `json:"data"`
}

// ItemData is an item's decoded content; which fields are set depends on the kind.
type ItemData struct {
	EncType string `json:"enc_type,omitempty"` // messages: pkmsg, msg or skmsg
	// Text is the text (WhatsApp markup as sent), a caption, an edit's new text or a
	// reaction's emoji.
	Text     string   `json:"text,omitempty"`
	Extended bool     `json:"extended,omitempty"` // sent as extendedTextMessage
	Mentions []string `json:"mentions,omitempty"` // contextInfo.mentionedJid
	ReplyTo  *Quoted  `json:"reply_to,omitempty"`
	// Target is the message a reaction, edit or revoke is about.
	Target   *MessageKey `json:"target,omitempty"`
	Removed  bool        `json:"removed,omitempty"` // a reaction taken back
	Media    *MediaInfo  `json:"media,omitempty"`
	Location *Location   `json:"location,omitempty"`

	Receipt   string `json:"receipt,omitempty"`    // delivered, read or played
	ChatState string `json:"chat_state,omitempty"` // composing, recording or paused

	Error  string `json:"error,omitempty"`   // why a message could not be decrypted
	GaveUp bool   `json:"gave_up,omitempty"` // no more retry receipts for it

	Group       *GroupChange `json:"group,omitempty"`
	Restriction *Restriction `json:"restriction,omitempty"`
}

// Quoted is the message a reply quotes (contextInfo).
type Quoted struct {
	ID          string `json:"id"`
	Participant string `json:"participant,omitempty"`
	Text        string `json:"text,omitempty"`
}

// MessageKey is a received MessageKey, as the sender wrote it.
type MessageKey struct {
	ID          string `json:"id"`
	RemoteJID   string `json:"remote_jid,omitempty"`
	FromMe      bool   `json:"from_me"`
	Participant string `json:"participant,omitempty"`
}

// Media fetch states.
const (
	MediaPending = "pending"
	MediaOK      = "ok"
	MediaFailed  = "error"
)

// MediaInfo is a received media message's metadata and what fetching it gave.
type MediaInfo struct {
	Type       string `json:"type"` // image, video, audio, ptt or document
	Mimetype   string `json:"mimetype,omitempty"`
	FileName   string `json:"file_name,omitempty"`
	Title      string `json:"title,omitempty"`
	Width      uint32 `json:"width,omitempty"`
	Height     uint32 `json:"height,omitempty"`
	Seconds    uint32 `json:"seconds,omitempty"`
	PageCount  uint32 `json:"page_count,omitempty"`
	FileLength uint64 `json:"file_length"`
	DirectPath string `json:"direct_path,omitempty"`
	URL        string `json:"url,omitempty"`

	// Status is MediaPending until the fetch ended, then MediaOK or MediaFailed.
	Status string `json:"status"`
	// SHA256 (hex) and Size are of the fetched, verified plaintext.
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// Path is where the plaintext is kept (Config.MediaDir), "" when it is not.
	Path string `json:"path,omitempty"`
	// Error and ErrorKind say why the fetch or the verification failed; ErrorKind is
	// one of wrong_origin, too_large, http_status, unreachable, bad_mac, bad_hash,
	// bad_blob, bad_message, not_found, unavailable, no_source, failed.
	Error     string `json:"error,omitempty"`
	ErrorKind string `json:"error_kind,omitempty"`
	HTTPCode  int    `json:"http_code,omitempty"`
}

// GroupChange is a w:gp2 notification: Action is the element's tag (create, add,
// remove, promote, demote, subject, description, leave).
type GroupChange struct {
	Action       string   `json:"action"`
	Participants []string `json:"participants,omitempty"`
	Subject      string   `json:"subject,omitempty"`
	Description  string   `json:"description,omitempty"`
}

// Restriction is an account_sync restriction.
type Restriction struct {
	Reason string    `json:"reason"`
	Until  time.Time `json:"until"`
}

// Filter selects inbox items; zero fields select everything.
type Filter struct {
	Device jid.JID // one device of the user
	Kinds  []Kind
	Chat   jid.JID
	ID     string // the message id (receipts: the message they are about)
	After  int64  // only items with Seq > After
	Limit  int    // at most this many, oldest first; default 1000
}

// maxPage is the most items one Inbox call returns.
const maxPage = 1000

// inbox is the metasim_inbox table, with a broadcast of every change for waiters.
type inbox struct {
	db  *dbutil.Database
	now func() time.Time

	mu      sync.Mutex
	changed chan struct{}
}

func newInbox(db *dbutil.Database, now func() time.Time, log zerolog.Logger) *inbox {
	table := dbutil.BuildUpgradeTable().WithFSPath(upgradeFiles, "upgrades").Finish()
	child := db.Child(VersionTable, table, dbutil.ZeroLogger(log.With().Str("db_section", "metasim_simuser").Logger()))
	return &inbox{db: child, now: now, changed: make(chan struct{})}
}

func (in *inbox) upgrade(ctx context.Context) error {
	if err := in.db.Upgrade(ctx); err != nil {
		return fmt.Errorf("failed to upgrade metasim simuser tables: %w", err)
	}
	return nil
}

// notify wakes every waiter; call it after the change committed.
func (in *inbox) notify() {
	in.mu.Lock()
	close(in.changed)
	in.changed = make(chan struct{})
	in.mu.Unlock()
}

func (in *inbox) changes() <-chan struct{} {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.changed
}

func unixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromUnixMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// add stores an item (with ctx's transaction, if any) and returns its seq. It does
// not notify: the caller does once the transaction committed.
func (in *inbox) add(ctx context.Context, it *Item) error {
	data, err := json.Marshal(it.Data)
	if err != nil {
		return fmt.Errorf("failed to encode inbox item: %w", err)
	}
	if it.ReceivedAt.IsZero() {
		it.ReceivedAt = in.now()
	}
	err = in.db.QueryRow(ctx, `
		INSERT INTO metasim_inbox (owner, device, kind, message_id, chat, sender, ts, received_at, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq`,
		it.User.String(), it.Device.String(), string(it.Kind), it.ID, it.Chat.String(), it.Sender.String(),
		unixMS(it.Timestamp), unixMS(it.ReceivedAt), string(data)).Scan(&it.Seq)
	if err != nil {
		return fmt.Errorf("failed to store inbox item: %w", err)
	}
	return nil
}

// setData replaces an item's content (a media fetch that ended).
func (in *inbox) setData(ctx context.Context, seq int64, d ItemData) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("failed to encode inbox item: %w", err)
	}
	if _, err := in.db.Exec(ctx, `UPDATE metasim_inbox SET data=$1 WHERE seq=$2`, string(data), seq); err != nil {
		return fmt.Errorf("failed to update inbox item: %w", err)
	}
	return nil
}

// list returns a user's items matching f, oldest first.
func (in *inbox) list(ctx context.Context, user jid.JID, f Filter) ([]Item, error) {
	var sb strings.Builder
	sb.WriteString(`SELECT seq, owner, device, kind, message_id, chat, sender, ts, received_at, data
		FROM metasim_inbox WHERE owner=$1 AND seq > $2`)
	args := []any{user.ToUser().String(), f.After}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !f.Device.IsEmpty() {
		sb.WriteString(" AND device=" + arg(f.Device.String()))
	}
	if !f.Chat.IsEmpty() {
		sb.WriteString(" AND chat=" + arg(f.Chat.String()))
	}
	if f.ID != "" {
		sb.WriteString(" AND message_id=" + arg(f.ID))
	}
	if len(f.Kinds) > 0 {
		marks := make([]string, 0, len(f.Kinds))
		for _, k := range f.Kinds {
			marks = append(marks, arg(string(k)))
		}
		sb.WriteString(" AND kind IN (" + strings.Join(marks, ", ") + ")")
	}
	limit := f.Limit
	if limit <= 0 || limit > maxPage {
		limit = maxPage
	}
	sb.WriteString(" ORDER BY seq LIMIT " + arg(limit))
	rows, err := in.db.Query(ctx, sb.String(), args...)
	items, err := dbutil.NewRowIterWithError(rows, scanItem, err).AsList()
	if err != nil {
		return nil, fmt.Errorf("failed to read inbox: %w", err)
	}
	return items, nil
}

func scanItem(row dbutil.Scannable) (Item, error) {
	var it Item
	var owner, device, kind, chat, sender, data string
	var ts, received int64
	if err := row.Scan(&it.Seq, &owner, &device, &kind, &it.ID, &chat, &sender, &ts, &received, &data); err != nil {
		return it, err
	}
	for _, c := range []struct {
		dst *jid.JID
		src string
	}{{&it.User, owner}, {&it.Device, device}, {&it.Chat, chat}, {&it.Sender, sender}} {
		if err := c.dst.UnmarshalText([]byte(c.src)); err != nil {
			return it, fmt.Errorf("corrupt jid in inbox item %d: %w", it.Seq, err)
		}
	}
	if err := json.Unmarshal([]byte(data), &it.Data); err != nil {
		return it, fmt.Errorf("corrupt data in inbox item %d: %w", it.Seq, err)
	}
	it.Kind = Kind(kind)
	it.Timestamp, it.ReceivedAt = fromUnixMS(ts), fromUnixMS(received)
	return it, nil
}

// clear deletes a user's items.
func (in *inbox) clear(ctx context.Context, user jid.JID) error {
	if _, err := in.db.Exec(ctx, `DELETE FROM metasim_inbox WHERE owner=$1`, user.ToUser().String()); err != nil {
		return fmt.Errorf("failed to clear inbox: %w", err)
	}
	return nil
}

// setAutoRead stores a user's auto-read setting.
func (in *inbox) setAutoRead(ctx context.Context, user jid.JID, on bool) error {
	_, err := in.db.Exec(ctx, `
		INSERT INTO metasim_simuser (jid, auto_read) VALUES ($1, $2)
		ON CONFLICT (jid) DO UPDATE SET auto_read=excluded.auto_read`, user.ToUser().String(), on)
	if err != nil {
		return fmt.Errorf("failed to store settings: %w", err)
	}
	return nil
}

// autoRead reads a user's auto-read setting (false when never set).
func (in *inbox) autoRead(ctx context.Context, user jid.JID) (bool, error) {
	var on bool
	err := in.db.QueryRow(ctx, `SELECT auto_read FROM metasim_simuser WHERE jid=$1`, user.ToUser().String()).Scan(&on)
	if err != nil && !isNoRows(err) {
		return false, fmt.Errorf("failed to read settings: %w", err)
	}
	return on, nil
}
