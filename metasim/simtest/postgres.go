package simtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	_ "github.com/lib/pq" // registers "postgres"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// PostgresDSN creates a uniquely named database on the test server
// (INTEROP_TEST_POSTGRES, see sqltest) for a simulator's Config.Database, and drops it
// when the test ends. An unreachable server fails the test.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn := sqltest.PostgresDSN()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("INTEROP_TEST_POSTGRES must be a postgres:// URL for simulator tests")
	}
	admin, err := sql.Open("postgres", dsn)
	if err != nil {
		tb.Fatalf("failed to open postgres: %v", err)
	}
	tb.Cleanup(func() { _ = admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := "metasim_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("postgres is unreachable or refused a test database (set INTEROP_TEST_POSTGRES): %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("failed to drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
