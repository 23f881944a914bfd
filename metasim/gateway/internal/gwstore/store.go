// Package gwstore is the simulated gateway's persistent state: the directory of Meta
// users and devices, opt-ins, third-party accounts, the key directory, groups, blocks,
// reports and restrictions, contact history and the per-endpoint delivery queues. It
// runs its own dbutil upgrades under the version table VersionTable, and every row is
// keyed by network so that the WhatsApp and Messenger gateways share one database.
//
// It holds no protocol logic (no stanzas, no routing): it must not import the stanza
// codec, the socket or the interop client.
package gwstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// VersionTable is the dbutil version table of this package's schema.
const VersionTable = "metasim_gateway_version"

var (
	// ErrNotFound: no such row (user, device, group, keys).
	ErrNotFound = errors.New("not found")
	// ErrExists: the row to create is already there.
	ErrExists = errors.New("already exists")
)

//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// Store is one network's view of the gateway tables.
type Store struct {
	db      *dbutil.Database
	network string
}

// New wraps db with this package's upgrade table. Call Upgrade before use.
func New(db *dbutil.Database, network string, log zerolog.Logger) *Store {
	table := dbutil.BuildUpgradeTable().WithFSPath(upgradeFiles, "upgrades").Finish()
	child := db.Child(VersionTable, table, dbutil.ZeroLogger(log.With().Str("db_section", "metasim_gateway").Logger()))
	return &Store{db: child, network: network}
}

// Upgrade creates or migrates the tables.
func (s *Store) Upgrade(ctx context.Context) error {
	if err := s.db.Upgrade(ctx); err != nil {
		return fmt.Errorf("failed to upgrade metasim gateway tables: %w", err)
	}
	return nil
}

// Network is the network this store's rows belong to.
func (s *Store) Network() string { return s.network }

// DoTxn runs fn in one transaction; store calls made with fn's ctx join it.
func (s *Store) DoTxn(ctx context.Context, fn func(ctx context.Context) error) error {
	return s.db.DoTxn(ctx, nil, fn)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v) }

// parseJID reads a JID column; a corrupt value is an error, never a panic.
func parseJID(s string) (jid.JID, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, fmt.Errorf("corrupt jid column: %w", err)
	}
	return j, nil
}

// queryJIDs runs a query whose only column is a JID.
func (s *Store) queryJIDs(ctx context.Context, query string, args ...any) ([]jid.JID, error) {
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []jid.JID
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		j, err := parseJID(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// exists runs a query that returns a row when something exists.
func (s *Store) exists(ctx context.Context, query string, args ...any) (bool, error) {
	var one int
	err := s.db.QueryRow(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

func fixed32(b []byte, what string) ([32]byte, error) {
	var out [32]byte
	if len(b) != 32 {
		return out, fmt.Errorf("corrupt %s column: %d bytes", what, len(b))
	}
	copy(out[:], b)
	return out, nil
}
