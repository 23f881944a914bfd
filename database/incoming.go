package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Incoming is one received message kept until bridgev2 handled it. The fields are the
// interop message info as plain values, so this package need not import the protocol.
type Incoming struct {
	LoginID  string
	Chat     string
	Sender   string
	StanzaID string
	IsGroup  bool
	// Timestamp is the stanza's t, zero when it had none.
	Timestamp time.Time
	Type      string
	MediaType string
	Edit      string
	PushName  string
	// Message is the serialized waE2E.Message, nil when the message did not decrypt.
	Message    []byte
	ReceivedAt time.Time
	// Attempts is how many times bridgev2 failed to handle it so far.
	Attempts int
}

// PutIncoming stores a received message. Call it with the decryption's transaction
// ctx (inside interop's DeliverFunc): the row then commits together with the ratchet
// step, before the stanza is acked. A message already stored (a redelivery) is kept
// as it was, so it is never stored twice; only a stored undecryptable message takes
// the content of the same message decrypted later (the sender's answer to a retry
// receipt). ReceivedAt is set from the clock.
func (d *Database) PutIncoming(ctx context.Context, in *Incoming) error {
	var ts int64
	if !in.Timestamp.IsZero() {
		ts = in.Timestamp.UnixMilli()
	}
	var msg any
	if in.Message != nil {
		msg = in.Message
	}
	// Both statements run in ctx's transaction when there is one, which keeps seq
	// unique per login: SQLite's transaction holds the write lock, and on PostgreSQL a
	// clash on seq would only make two messages equal in order, never lose one.
	_, err := d.db.Exec(ctx, `
		INSERT INTO interop_bridge_incoming (login_id, chat, sender, stanza_id, seq, is_group, sent_at,
			msg_type, media_type, edit, push_name, message, received_at)
		VALUES ($1, $2, $3, $4,
			(SELECT COALESCE(MAX(seq), 0) + 1 FROM interop_bridge_incoming WHERE login_id=$1),
			$5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (login_id, chat, sender, stanza_id) DO UPDATE
			SET message=excluded.message, msg_type=excluded.msg_type, media_type=excluded.media_type
			WHERE interop_bridge_incoming.message IS NULL AND excluded.message IS NOT NULL`,
		in.LoginID, in.Chat, in.Sender, in.StanzaID, in.IsGroup, ts,
		in.Type, in.MediaType, in.Edit, in.PushName, msg, d.nowMilli())
	if err != nil {
		return fmt.Errorf("failed to store incoming message: %w", err)
	}
	return nil
}

// PendingIncoming returns the login's stored messages in the order they arrived.
func (d *Database) PendingIncoming(ctx context.Context, loginID string) ([]*Incoming, error) {
	rows, err := d.db.Query(ctx, `
		SELECT chat, sender, stanza_id, is_group, sent_at, msg_type, media_type, edit, push_name,
			message, received_at, attempts
		FROM interop_bridge_incoming WHERE login_id=$1 ORDER BY seq, received_at`, loginID)
	if err != nil {
		return nil, fmt.Errorf("failed to list pending incoming messages: %w", err)
	}
	defer rows.Close()
	var out []*Incoming
	for rows.Next() {
		in := &Incoming{LoginID: loginID}
		var ts, at int64
		if err := rows.Scan(&in.Chat, &in.Sender, &in.StanzaID, &in.IsGroup, &ts, &in.Type, &in.MediaType,
			&in.Edit, &in.PushName, &in.Message, &at, &in.Attempts); err != nil {
			return nil, fmt.Errorf("failed to read pending incoming message: %w", err)
		}
		if ts != 0 {
			in.Timestamp = time.UnixMilli(ts)
		}
		in.ReceivedAt = time.UnixMilli(at)
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list pending incoming messages: %w", err)
	}
	return out, nil
}

// DeleteIncoming forgets a message once bridgev2 handled it. Deleting one that is not
// stored is not an error.
func (d *Database) DeleteIncoming(ctx context.Context, loginID, chat, sender, stanzaID string) error {
	if _, err := d.db.Exec(ctx, `
		DELETE FROM interop_bridge_incoming WHERE login_id=$1 AND chat=$2 AND sender=$3 AND stanza_id=$4`,
		loginID, chat, sender, stanzaID); err != nil {
		return fmt.Errorf("failed to delete incoming message: %w", err)
	}
	return nil
}

// IncomingFailed counts a failed handling of a stored message and returns how many
// there were so far (0 when the message is not stored), so the caller can give up on
// one that can never be bridged instead of replaying it forever.
func (d *Database) IncomingFailed(ctx context.Context, loginID, chat, sender, stanzaID string) (int, error) {
	var attempts int
	err := d.db.QueryRow(ctx, `
		UPDATE interop_bridge_incoming SET attempts=attempts+1
		WHERE login_id=$1 AND chat=$2 AND sender=$3 AND stanza_id=$4
		RETURNING attempts`, loginID, chat, sender, stanzaID).Scan(&attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("failed to count a failed handling: %w", err)
	}
	return attempts, nil
}

// DeleteLoginIncoming forgets every stored message of a login (at logout).
func (d *Database) DeleteLoginIncoming(ctx context.Context, loginID string) error {
	if _, err := d.db.Exec(ctx, `DELETE FROM interop_bridge_incoming WHERE login_id=$1`, loginID); err != nil {
		return fmt.Errorf("failed to delete the login's incoming messages: %w", err)
	}
	return nil
}
