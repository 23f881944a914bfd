// Package sqltest opens throwaway SQLite and PostgreSQL databases for tests of SQL
// backed code (the Signal store, and anything built on it).
//
// PostgreSQL comes from the DSN in INTEROP_TEST_POSTGRES (default DefaultPostgres);
// each call creates a uniquely named database and drops it when the test ends. An
// unreachable server fails the test: storage code must be tested on both engines.
//
// It registers the SQL drivers it needs, and is meant to be imported from tests only.
package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // registers "postgres"
	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers "sqlite3-fk-wal"
)

// DefaultPostgres is used when INTEROP_TEST_POSTGRES is not set.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Backend is one database engine to run a test on.
type Backend struct {
	Name string // "sqlite" or "postgres", used as the subtest name
	Open func(tb testing.TB) *dbutil.Database
}

// Backends lists the engines every storage test runs on.
func Backends() []Backend {
	return []Backend{{Name: "sqlite", Open: SQLite}, {Name: "postgres", Open: Postgres}}
}

// Run runs fn as one subtest per engine, each with a fresh empty database.
func Run(t *testing.T, fn func(t *testing.T, db *dbutil.Database)) {
	t.Helper()
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) { fn(t, b.Open(t)) })
	}
}

// SQLiteDSNParams are the connection parameters recommended for SQLite: IMMEDIATE
// transactions (writers queue on the busy timeout instead of failing to upgrade a
// read lock) and a per-connection prepared statement cache (each message runs the
// same few statements; re-preparing them cost a fifth of a send).
const SQLiteDSNParams = "_txlock=immediate&_stmt_cache_size=64"

// SQLite opens a new database file in tb.TempDir(), in WAL mode with foreign keys on
// and the SQLiteDSNParams.
func SQLite(tb testing.TB) *dbutil.Database {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "test.db")
	db, err := dbutil.NewWithDialect("file:"+path+"?"+SQLiteDSNParams, "sqlite3-fk-wal")
	if err != nil {
		tb.Fatalf("failed to open sqlite: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// PostgresDSN returns the DSN of the test server.
func PostgresDSN() string {
	if dsn := os.Getenv("INTEROP_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return DefaultPostgres
}

// Postgres creates a uniquely named database on the test server and drops it when tb
// ends.
func Postgres(tb testing.TB) *dbutil.Database {
	tb.Helper()
	dsn := PostgresDSN()
	admin, err := sql.Open("postgres", dsn)
	if err != nil {
		tb.Fatalf("failed to open postgres %s: %v", redact(dsn), err)
	}
	tb.Cleanup(func() { _ = admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err = admin.PingContext(ctx); err != nil {
		tb.Fatalf("postgres at %s is unreachable (set INTEROP_TEST_POSTGRES): %v", redact(dsn), err)
	}
	name := "interop_test_" + randomHex(8)
	if _, err = admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("failed to create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("failed to drop test database %s: %v", name, err)
		}
	})
	testDSN, err := withDatabase(dsn, name)
	if err != nil {
		tb.Fatal(err)
	}
	db, err := dbutil.NewWithDialect(testDSN, "postgres")
	if err != nil {
		tb.Fatalf("failed to open test database: %v", err)
	}
	// Registered after the drop, so it runs first: the pool must be closed before the
	// database goes away.
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// withDatabase points a URL or key=value DSN at another database.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("failed to parse postgres DSN: %w", err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	// lib/pq lets a later key override an earlier one.
	return dsn + " dbname=" + name, nil
}

// redact hides a password in a URL DSN before it goes into a test log.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return "(INTEROP_TEST_POSTGRES)"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
