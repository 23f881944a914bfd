package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

func (s *signalStore) PutSentMessage(ctx context.Context, msg *store.SentMessage) error {
	if msg == nil {
		return errors.New("failed to put sent message: nil message")
	}
	plaintext := msg.Plaintext
	if plaintext == nil {
		plaintext = []byte{} // the column is NOT NULL; an empty message is still a message
	}
	_, err := s.db.Exec(ctx, `
		INSERT INTO interop_sent_message (account_jid, chat_jid, message_id, plaintext, sent_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (account_jid, chat_jid, message_id) DO UPDATE
			SET plaintext=excluded.plaintext, sent_at=excluded.sent_at`,
		s.jid, msg.Chat.String(), msg.ID, plaintext, msg.SentAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("failed to put sent message: %w", err)
	}
	return nil
}

func (s *signalStore) GetSentMessage(ctx context.Context, chat jid.JID, id string) (*store.SentMessage, error) {
	msg := &store.SentMessage{Chat: chat, ID: id}
	var sentAt int64
	err := s.db.QueryRow(ctx, `
		SELECT plaintext, sent_at FROM interop_sent_message
		WHERE account_jid=$1 AND chat_jid=$2 AND message_id=$3`,
		s.jid, chat.String(), id).Scan(&msg.Plaintext, &sentAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("failed to get sent message: %w", store.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("failed to get sent message: %w", err)
	}
	msg.SentAt = time.UnixMilli(sentAt)
	return msg, nil
}

func (s *signalStore) PruneSentMessages(ctx context.Context, before time.Time) error {
	_, err := s.db.Exec(ctx,
		`DELETE FROM interop_sent_message WHERE account_jid=$1 AND sent_at < $2`, s.jid, before.UnixMilli())
	if err != nil {
		return fmt.Errorf("failed to prune sent messages: %w", err)
	}
	return nil
}
