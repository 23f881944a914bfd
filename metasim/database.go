package metasim

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/lib/pq" // registers "postgres"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers "sqlite3-fk-wal"
)

// sqliteParams: IMMEDIATE transactions take the write lock when they begin instead of
// failing to upgrade a read lock; the statement cache saves re-preparing the few
// statements every message runs.
const sqliteParams = "_txlock=immediate&_stmt_cache_size=64"

// sqliteReadParams are the read pool's: it can only read (a write routed there by
// mistake fails instead of contending for the lock).
const sqliteReadParams = "_query_only=true&_stmt_cache_size=64"

// sqliteReaders bounds the read pool. Readers do not block the writer in WAL mode;
// a few cover the control API's polls and the gateway's queue reads.
const sqliteReaders = 4

// openedDB is the database with what Close must clean up after it.
type openedDB struct {
	db      *dbutil.Database
	engine  string // "sqlite" or "postgres"
	where   string // a file path or a redacted DSN, for the log
	tempDir string // removed after closing (memory mode)
}

// openDatabase opens the configured database. MemoryDatabase is a SQLite file in a
// fresh temporary directory rather than SQLite's ":memory:": every pooled connection
// to ":memory:" would get its own empty database, and a shared-cache one fails
// concurrent writers with SQLITE_LOCKED instead of waiting.
func openDatabase(cfg Config, log zerolog.Logger) (*openedDB, error) {
	out := &openedDB{}
	var err error
	switch {
	case isPostgres(cfg.Database):
		out.engine, out.where = "postgres", redactDSN(cfg.Database)
		out.db, err = dbutil.NewWithDialect(cfg.Database, "postgres")
	default:
		path := cfg.Database
		switch {
		case path == MemoryDatabase:
			if out.tempDir, err = os.MkdirTemp("", "metasim-*"); err != nil {
				return nil, fmt.Errorf("failed to create the temporary database directory: %w", err)
			}
			path = filepath.Join(out.tempDir, "metasim.db")
		case path == "":
			path = filepath.Join(cfg.DataDir, "metasim.db")
		case strings.HasPrefix(path, "file:") || strings.Contains(path, "?"):
			return nil, fmt.Errorf("database: give a plain SQLite file path, not a URI")
		}
		out.engine, out.where = "sqlite", path
		out.db, err = openSQLite(path)
	}
	if err != nil {
		out.removeTemp()
		return nil, fmt.Errorf("failed to open the %s database: %w", out.engine, err)
	}
	out.db.Owner = "metasim"
	out.db.Log = dbutil.ZeroLogger(log.With().Str("component", "database").Logger())
	return out, nil
}

// openSQLite opens a SQLite file with one writer: the main pool, which every write
// and transaction uses, has a single connection, and plain SELECTs outside a
// transaction go to a separate read-only pool.
//
// SQLite lets one connection write at a time. With an unbounded pool, hundreds of
// simulated devices decrypting at once (a group message) each held a connection and
// waited for the lock in SQLite's busy handler, which polls and is not fair: some
// waited past its 5 s timeout and failed ("database is locked"). With one writer
// connection they wait in database/sql's pool instead, without a timeout, and the lock
// is never contended within the process. Reads need no lock in WAL mode, so they keep
// running beside the writer instead of queueing behind it.
//
// Code must therefore not write with another ctx inside a transaction (it would
// wait for its own connection): the store packages already follow that rule, since on
// SQLite such a write would wait for the transaction's lock anyway.
func openSQLite(path string) (*dbutil.Database, error) {
	db, err := dbutil.NewWithDialect("file:"+path+"?"+sqliteParams, "sqlite3-fk-wal")
	if err != nil {
		return nil, err
	}
	db.RawDB.SetMaxOpenConns(1)
	db.RawDB.SetMaxIdleConns(1)
	// The writer's first connection puts the file in WAL mode, which the read-only
	// connections could not do.
	if err = db.RawDB.PingContext(context.Background()); err != nil {
		_ = db.Close()
		return nil, err
	}
	ro, err := sql.Open("sqlite3-fk-wal", "file:"+path+"?"+sqliteReadParams)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	ro.SetMaxOpenConns(sqliteReaders)
	ro.SetMaxIdleConns(sqliteReaders)
	// dbutil closes ReadOnlyDB with the database and begins read-only transactions
	// there; the router sends plain reads there too. Set before any Child is made,
	// since children copy it.
	db.ReadOnlyDB = ro
	db.LoggingDB.UnderlyingExecable = readRouter{write: db.RawDB, read: ro}
	return db, nil
}

// readRouter sends statements outside transactions to the writer, except SELECTs
// (which cannot write), which go to the read pool.
type readRouter struct{ write, read *sql.DB }

var _ dbutil.UnderlyingExecutableWithTx = readRouter{}

func (r readRouter) pick(query string) *sql.DB {
	q := strings.TrimLeft(query, " \t\r\n(")
	if len(q) >= 6 && strings.EqualFold(q[:6], "SELECT") {
		return r.read
	}
	return r.write
}

func (r readRouter) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return r.write.ExecContext(ctx, query, args...)
}

func (r readRouter) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return r.pick(query).QueryContext(ctx, query, args...)
}

func (r readRouter) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return r.pick(query).QueryRowContext(ctx, query, args...)
}

func (r readRouter) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return r.write.BeginTx(ctx, opts)
}

// Close closes the pool and deletes a memory-mode database.
func (o *openedDB) Close() error {
	err := o.db.Close()
	o.removeTemp()
	if err != nil {
		return fmt.Errorf("failed to close the database: %w", err)
	}
	return nil
}

func (o *openedDB) removeTemp() {
	if o.tempDir != "" {
		_ = os.RemoveAll(o.tempDir)
		o.tempDir = ""
	}
}

// redactDSN hides a password in a PostgreSQL URL before it is logged or printed.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return dsn[:scheme+3] + user + ":xxxxx" + dsn[at:]
	}
	return dsn
}
