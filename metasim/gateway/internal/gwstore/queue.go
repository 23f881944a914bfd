package gwstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// QueueItem is one stanza waiting for an endpoint's ack.
type QueueItem struct {
	Seq         int64
	Class       string // message, receipt or notification
	ID          string
	Type        string // the type attribute of a receipt or notification
	From        string
	Participant string
	Frame       []byte
	CreatedAt   time.Time
}

// Enqueue appends a stanza to an endpoint's queue and returns its seq. When the
// queue then holds more than max items the oldest go, as the gateway keeps at most
// max stanzas for an endpoint (0: no limit).
func (s *Store) Enqueue(ctx context.Context, endpoint jid.JID, it QueueItem, max int) (int64, error) {
	var seq int64
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		err := s.db.QueryRow(ctx, `
			INSERT INTO metasim_queue (network, endpoint, class, stanza_id, stanza_type, from_jid, participant, frame, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq`,
			s.network, endpoint.String(), it.Class, it.ID, it.Type, it.From, it.Participant, it.Frame, ms(it.CreatedAt)).Scan(&seq)
		if err != nil {
			return fmt.Errorf("failed to enqueue: %w", err)
		}
		if max <= 0 {
			return nil
		}
		// The max-th newest seq is the oldest to keep; with fewer rows the subquery
		// is NULL and nothing is deleted.
		_, err = s.db.Exec(ctx, `
			DELETE FROM metasim_queue WHERE network=$1 AND endpoint=$2 AND seq < (
				SELECT seq FROM metasim_queue WHERE network=$1 AND endpoint=$2 ORDER BY seq DESC LIMIT 1 OFFSET $3)`,
			s.network, endpoint.String(), max-1)
		if err != nil {
			return fmt.Errorf("failed to trim queue: %w", err)
		}
		return nil
	})
	return seq, err
}

// QueueAfter returns up to limit queued items of an endpoint with seq > after.
func (s *Store) QueueAfter(ctx context.Context, endpoint jid.JID, after int64, limit int) ([]QueueItem, error) {
	rows, err := s.db.Query(ctx, `
		SELECT seq, class, stanza_id, stanza_type, from_jid, participant, frame, created_at FROM metasim_queue
		WHERE network=$1 AND endpoint=$2 AND seq>$3 ORDER BY seq LIMIT $4`,
		s.network, endpoint.String(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("failed to read queue: %w", err)
	}
	defer rows.Close()
	var out []QueueItem
	for rows.Next() {
		var it QueueItem
		var created int64
		if err := rows.Scan(&it.Seq, &it.Class, &it.ID, &it.Type, &it.From, &it.Participant, &it.Frame, &created); err != nil {
			return nil, fmt.Errorf("failed to read queue: %w", err)
		}
		it.CreatedAt = fromMS(created)
		out = append(out, it)
	}
	return out, rows.Err()
}

// QueueStats returns how many items an endpoint's queue holds and the highest seq.
func (s *Store) QueueStats(ctx context.Context, endpoint jid.JID) (count int, maxSeq int64, err error) {
	var max *int64
	err = s.db.QueryRow(ctx, `SELECT COUNT(*), MAX(seq) FROM metasim_queue WHERE network=$1 AND endpoint=$2`,
		s.network, endpoint.String()).Scan(&count, &max)
	if err != nil {
		return 0, 0, fmt.Errorf("failed to read queue stats: %w", err)
	}
	if max != nil {
		maxSeq = *max
	}
	return count, maxSeq, nil
}

// AckFilter names the queued stanza an ack acknowledges. From, Participant and Type
// narrow the match when set; HasType says whether the ack carried a type at all.
type AckFilter struct {
	Class, ID, From, Participant, Type string
	HasType                            bool
}

// Ack removes the one queued stanza an ack acknowledges: the oldest that matches.
// Without a type, one without a type (a delivery receipt, a message) is preferred.
// It reports whether one was removed.
func (s *Store) Ack(ctx context.Context, endpoint jid.JID, f AckFilter) (bool, error) {
	query := `SELECT seq FROM metasim_queue WHERE network=$1 AND endpoint=$2 AND class=$3 AND stanza_id=$4`
	args := []any{s.network, endpoint.String(), f.Class, f.ID}
	add := func(cond string, v any) {
		args = append(args, v)
		query += fmt.Sprintf(" AND %s=$%d", cond, len(args))
	}
	if f.From != "" {
		add("from_jid", f.From)
	}
	if f.Participant != "" {
		add("participant", f.Participant)
	}
	if f.HasType {
		add("stanza_type", f.Type)
		query += " ORDER BY seq"
	} else {
		query += " ORDER BY CASE WHEN stanza_type='' THEN 0 ELSE 1 END, seq"
	}
	query += " LIMIT 1"
	var seq int64
	err := s.db.QueryRow(ctx, query, args...).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("failed to find acked stanza: %w", err)
	}
	if _, err = s.db.Exec(ctx, `DELETE FROM metasim_queue WHERE seq=$1`, seq); err != nil {
		return false, fmt.Errorf("failed to ack: %w", err)
	}
	return true, nil
}

// PruneQueues drops queued stanzas created before before, in every endpoint's queue.
func (s *Store) PruneQueues(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM metasim_queue WHERE network=$1 AND created_at<$2`, s.network, ms(before))
	if err != nil {
		return 0, fmt.Errorf("failed to prune queues: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// DropQueue empties an endpoint's queue.
func (s *Store) DropQueue(ctx context.Context, endpoint jid.JID) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM metasim_queue WHERE network=$1 AND endpoint=$2`, s.network, endpoint.String()); err != nil {
		return fmt.Errorf("failed to drop queue: %w", err)
	}
	return nil
}
