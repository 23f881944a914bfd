package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ASCursor returns the stored cursor called name ("" when none was stored).
func (d *Database) ASCursor(ctx context.Context, name string) (string, error) {
	var value string
	err := d.db.QueryRow(ctx, `SELECT value FROM interop_bridge_as_cursor WHERE name=$1`, name).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("failed to read cursor %s: %w", name, err)
	}
	return value, nil
}

// SetASCursor stores the cursor called name.
func (d *Database) SetASCursor(ctx context.Context, name, value string) error {
	_, err := d.db.Exec(ctx, `
		INSERT INTO interop_bridge_as_cursor (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value=excluded.value`, name, value)
	if err != nil {
		return fmt.Errorf("failed to store cursor %s: %w", name, err)
	}
	return nil
}
