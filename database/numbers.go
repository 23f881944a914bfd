package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
)

// ErrNumberTaken: the number is already assigned to another Matrix user on that network.
var ErrNumberTaken = errors.New("number is assigned to another user")

// Assignment is one number an admin gave to a Matrix user on one network.
type Assignment struct {
	Network    string
	Number     string // E.164 digits without "+"
	MXID       id.UserID
	AssignedBy id.UserID
	AssignedAt time.Time
}

// Assign gives number on network to mxid. Assigning it again to the same user keeps the
// first assignment; a number held by someone else gives ErrNumberTaken (unassign it
// first: taking a number away from someone must be a deliberate step).
func (d *Database) Assign(ctx context.Context, network, number string, mxid, by id.UserID) error {
	res, err := d.db.Exec(ctx, `
		INSERT INTO interop_bridge_number (network, number, mxid, assigned_by, assigned_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (network, number) DO NOTHING`, network, number, mxid, by, d.nowMilli())
	if err != nil {
		return fmt.Errorf("failed to assign number: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("failed to assign number: %w", err)
	} else if n == 1 {
		return nil
	}
	holder, err := d.AssignedTo(ctx, network, number)
	if err != nil {
		return err
	}
	if holder != mxid {
		return ErrNumberTaken
	}
	return nil
}

// Unassign takes number on network away from whoever holds it; it reports whether it
// was assigned.
func (d *Database) Unassign(ctx context.Context, network, number string) (bool, error) {
	res, err := d.db.Exec(ctx, `DELETE FROM interop_bridge_number WHERE network=$1 AND number=$2`, network, number)
	if err != nil {
		return false, fmt.Errorf("failed to unassign number: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("failed to unassign number: %w", err)
	}
	return n > 0, nil
}

// AssignedTo returns the Matrix user holding number on network, or "" when nobody does.
func (d *Database) AssignedTo(ctx context.Context, network, number string) (id.UserID, error) {
	var mxid id.UserID
	err := d.db.QueryRow(ctx, `SELECT mxid FROM interop_bridge_number WHERE network=$1 AND number=$2`,
		network, number).Scan(&mxid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("failed to look up number: %w", err)
	}
	return mxid, nil
}

// NumbersOf lists the numbers assigned to mxid on every network, by network and number.
func (d *Database) NumbersOf(ctx context.Context, mxid id.UserID) ([]Assignment, error) {
	rows, err := d.db.Query(ctx, `
		SELECT network, number, mxid, assigned_by, assigned_at FROM interop_bridge_number
		WHERE mxid=$1 ORDER BY network, number`, mxid)
	if err != nil {
		return nil, fmt.Errorf("failed to list numbers: %w", err)
	}
	defer rows.Close()
	var out []Assignment
	for rows.Next() {
		var a Assignment
		var at int64
		if err := rows.Scan(&a.Network, &a.Number, &a.MXID, &a.AssignedBy, &at); err != nil {
			return nil, fmt.Errorf("failed to read number: %w", err)
		}
		a.AssignedAt = time.UnixMilli(at)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list numbers: %w", err)
	}
	return out, nil
}
