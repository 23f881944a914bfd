package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
)

// HostedMedia is one encrypted blob the bridge hosts for Meta's proxy: the blob is in
// the media store under Name, this row says who may fetch it and when it goes.
type HostedMedia struct {
	Name      string
	Network   string // the network whose callback secret may fetch it
	LoginID   string
	MessageID string
	Size      int64 // bytes of the encrypted blob; 0 while it is being written
	CreatedAt time.Time
}

// InsertHostedMedia records a blob; a zero CreatedAt is set from the clock.
func (d *Database) InsertHostedMedia(ctx context.Context, m HostedMedia) error {
	created := m.CreatedAt.UnixMilli()
	if m.CreatedAt.IsZero() {
		created = d.nowMilli()
	}
	_, err := d.db.Exec(ctx, `
		INSERT INTO interop_bridge_hosted_media (name, network, login_id, message_id, size, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, m.Name, m.Network, m.LoginID, m.MessageID, m.Size, created)
	if err != nil {
		return fmt.Errorf("failed to record hosted media: %w", err)
	}
	return nil
}

// SetHostedMediaSize records the size of a blob once written; false when its row is
// gone (the message was revoked meanwhile).
func (d *Database) SetHostedMediaSize(ctx context.Context, name string, size int64) (bool, error) {
	res, err := d.db.Exec(ctx, `UPDATE interop_bridge_hosted_media SET size=$2 WHERE name=$1`, name, size)
	if err != nil {
		return false, fmt.Errorf("failed to record hosted media size: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("failed to record hosted media size: %w", err)
	}
	return n > 0, nil
}

// HostedMediaByName looks a blob up; nil when there is none.
func (d *Database) HostedMediaByName(ctx context.Context, name string) (*HostedMedia, error) {
	var m HostedMedia
	var created int64
	err := d.db.QueryRow(ctx, `
		SELECT name, network, login_id, message_id, size, created_at
		FROM interop_bridge_hosted_media WHERE name=$1`, name).
		Scan(&m.Name, &m.Network, &m.LoginID, &m.MessageID, &m.Size, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("failed to look up hosted media: %w", err)
	}
	m.CreatedAt = time.UnixMilli(created)
	return &m, nil
}

// HostedMediaOfMessage lists the names of a message's blobs.
func (d *Database) HostedMediaOfMessage(ctx context.Context, loginID, messageID string) ([]string, error) {
	rows, err := d.db.Query(ctx, `
		SELECT name FROM interop_bridge_hosted_media WHERE login_id=$1 AND message_id=$2 ORDER BY name`,
		loginID, messageID)
	return collectNames(rows, err, "failed to list a message's hosted media")
}

// HostedMediaBefore lists up to limit names of blobs created before t, oldest first.
func (d *Database) HostedMediaBefore(ctx context.Context, t time.Time, limit int) ([]string, error) {
	rows, err := d.db.Query(ctx, `
		SELECT name FROM interop_bridge_hosted_media WHERE created_at < $1 ORDER BY created_at, name LIMIT $2`,
		t.UnixMilli(), limit)
	return collectNames(rows, err, "failed to list expired hosted media")
}

// DeleteHostedMedia deletes a blob's row; false when there was none.
func (d *Database) DeleteHostedMedia(ctx context.Context, name string) (bool, error) {
	res, err := d.db.Exec(ctx, `DELETE FROM interop_bridge_hosted_media WHERE name=$1`, name)
	if err != nil {
		return false, fmt.Errorf("failed to delete hosted media: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("failed to delete hosted media: %w", err)
	}
	return n > 0, nil
}

func collectNames(rows dbutil.Rows, err error, what string) ([]string, error) {
	names, err := dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[string], err).AsList()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return names, nil
}
