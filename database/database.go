// Package database holds the bridge's own tables, beside bridgev2's and the interop
// store's in the same database: login tokens for the auth callback, the numbers admins
// assign to Matrix users, persisted appservice transactions, the outbox of received
// messages acked to the gateway but not yet bridged, and the record of the media blobs
// the bridge hosts for Meta's proxy. Its schema has its own
// dbutil version table (VersionTable) and every table is prefixed interop_bridge_.
//
// It must not import the connector, the interop protocol client or the simulator.
package database

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
)

// VersionTable is the dbutil version table of this package's schema, separate from
// bridgev2's and from the interop store's (interop_store_version).
const VersionTable = "interop_bridge_version"

//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// Database is the bridge's own tables. Safe for concurrent use.
type Database struct {
	db *dbutil.Database
	// Now is the clock of token expiry and timestamps; tests replace it.
	Now func() time.Time
}

// New wraps db (the bridge's database) with this package's upgrade table and version
// table. Call Upgrade before use.
func New(db *dbutil.Database, log zerolog.Logger) *Database {
	table := dbutil.BuildUpgradeTable().WithFSPath(upgradeFiles, "upgrades").Finish()
	child := db.Child(VersionTable, table, dbutil.ZeroLogger(log.With().Str("db_section", "interop_bridge").Logger()))
	return &Database{db: child, Now: time.Now}
}

// Upgrade creates or migrates the tables.
func (d *Database) Upgrade(ctx context.Context) error {
	if err := d.db.Upgrade(ctx); err != nil {
		return fmt.Errorf("failed to upgrade interop bridge database: %w", err)
	}
	return nil
}

func (d *Database) nowMilli() int64 { return d.Now().UnixMilli() }
