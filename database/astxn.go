package database

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
)

// TxnEvent is one event of an appservice transaction, persisted until it is handled.
type TxnEvent struct {
	TxnID      string
	EventID    string
	Body       json.RawMessage
	ReceivedAt time.Time
}

// asTxnSeqLock is the PostgreSQL advisory lock key that orders PutTxn writers.
const asTxnSeqLock = 0x696e7478 // "intx"

// PutTxn stores the events of transaction txnID in their order, in one database
// transaction. Events already stored (a homeserver retrying a transaction) are kept as
// they were, so a retry never queues an event twice.
func (d *Database) PutTxn(ctx context.Context, txnID string, events []TxnEvent) error {
	if len(events) == 0 {
		return nil
	}
	now := d.nowMilli()
	err := d.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		// Writers must take turns between reading MAX(seq) and inserting, or two
		// transactions stored at once share numbers and replay in arbitrary order.
		// SQLite's IMMEDIATE transactions already serialize writers; PostgreSQL
		// needs a lock (a transaction-scoped advisory lock, released at commit).
		if d.db.Dialect == dbutil.Postgres {
			if _, err := d.db.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, asTxnSeqLock); err != nil {
				return err
			}
		}
		var seq int64
		if err := d.db.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM interop_bridge_as_txn`).Scan(&seq); err != nil {
			return err
		}
		for _, evt := range events {
			if !json.Valid(evt.Body) {
				return fmt.Errorf("event %s: body is not JSON", evt.EventID)
			}
			seq++
			if _, err := d.db.Exec(ctx, `
				INSERT INTO interop_bridge_as_txn (event_id, txn_id, seq, body, received_at)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (event_id) DO NOTHING`, evt.EventID, txnID, seq, string(evt.Body), now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to store appservice transaction: %w", err)
	}
	return nil
}

// MarkHandled records that eventID was handled, so Unhandled no longer returns it.
func (d *Database) MarkHandled(ctx context.Context, eventID string) error {
	if _, err := d.db.Exec(ctx, `
		UPDATE interop_bridge_as_txn SET handled_at=$2 WHERE event_id=$1 AND handled_at IS NULL`,
		eventID, d.nowMilli()); err != nil {
		return fmt.Errorf("failed to mark event handled: %w", err)
	}
	return nil
}

// Unhandled returns up to limit events not yet handled, in arrival order (limit <= 0:
// all of them), for replay after a restart.
func (d *Database) Unhandled(ctx context.Context, limit int) ([]TxnEvent, error) {
	query := `
		SELECT txn_id, event_id, body, received_at FROM interop_bridge_as_txn
		WHERE handled_at IS NULL ORDER BY seq`
	args := []any{}
	if limit > 0 {
		query += ` LIMIT $1`
		args = append(args, limit)
	}
	rows, err := d.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list unhandled events: %w", err)
	}
	defer rows.Close()
	var out []TxnEvent
	for rows.Next() {
		var evt TxnEvent
		var body string
		var at int64
		if err := rows.Scan(&evt.TxnID, &evt.EventID, &body, &at); err != nil {
			return nil, fmt.Errorf("failed to read unhandled event: %w", err)
		}
		evt.Body, evt.ReceivedAt = json.RawMessage(body), time.UnixMilli(at)
		out = append(out, evt)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list unhandled events: %w", err)
	}
	return out, nil
}

// PruneHandled deletes events handled before cutoff.
func (d *Database) PruneHandled(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := d.db.Exec(ctx, `DELETE FROM interop_bridge_as_txn WHERE handled_at IS NOT NULL AND handled_at < $1`,
		cutoff.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("failed to prune handled events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("failed to count pruned events: %w", err)
	}
	return n, nil
}
