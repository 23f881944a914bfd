package sqltest

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

func TestWithDatabase(t *testing.T) {
	cases := []struct{ dsn, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"},
		{"postgresql://u:p@db/other", "postgresql://u:p@db/x"},
		{"host=/run/postgresql user=postgres", "host=/run/postgresql user=postgres dbname=x"},
	}
	for _, c := range cases {
		if got, err := withDatabase(c.dsn, "x"); err != nil || got != c.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", c.dsn, got, err, c.want)
		}
	}
}

func TestSQLiteSettings(t *testing.T) {
	ctx := context.Background()
	db := SQLite(t)
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1"} {
		var got string
		if err := db.QueryRow(ctx, "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q, %v; want %q", pragma, got, err, want)
		}
	}
}

func TestPostgresDropsDatabase(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) {
		db := Postgres(t)
		if err := db.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	if !strings.HasPrefix(name, "interop_test_") {
		t.Fatalf("test database is %q", name)
	}
	admin, err := sql.Open("postgres", PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var exists bool
	err = admin.QueryRow("SELECT EXISTS(SELECT 1 FROM pg_database WHERE datname=$1)", name).Scan(&exists)
	if err != nil || exists {
		t.Errorf("database %s exists after its test = %v, %v", name, exists, err)
	}
}
