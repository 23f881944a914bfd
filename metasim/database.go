package metasim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/lib/pq" // registers "postgres"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers "sqlite3-fk-wal"
)

// sqliteParams: IMMEDIATE transactions make writers queue on the busy timeout instead
// of failing to upgrade a read lock; the statement cache saves re-preparing the few
// statements every message runs.
const sqliteParams = "_txlock=immediate&_stmt_cache_size=64"

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
		out.db, err = dbutil.NewWithDialect("file:"+path+"?"+sqliteParams, "sqlite3-fk-wal")
	}
	if err != nil {
		out.removeTemp()
		return nil, fmt.Errorf("failed to open the %s database: %w", out.engine, err)
	}
	out.db.Owner = "metasim"
	out.db.Log = dbutil.ZeroLogger(log.With().Str("component", "database").Logger())
	return out, nil
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
