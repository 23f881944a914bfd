package database

import (
	"context"
	"os"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

func TestHostedMedia(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d, clk := open(t, raw)
		const login, other = "whatsapp:7-491701110001", "whatsapp:7-491701110002"
		old := clk.t.Add(-31 * 24 * time.Hour)
		for _, m := range []HostedMedia{
			{Name: "a", Network: "whatsapp", LoginID: login, MessageID: "m1", CreatedAt: old},
			{Name: "b", Network: "whatsapp", LoginID: login, MessageID: "m1"}, // clock time
			{Name: "c", Network: "whatsapp", LoginID: login, MessageID: "m2", CreatedAt: old.Add(time.Second)},
			{Name: "d", Network: "messenger", LoginID: other, MessageID: "m1", CreatedAt: clk.t.Add(-time.Millisecond)},
		} {
			if err := d.InsertHostedMedia(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.InsertHostedMedia(ctx, HostedMedia{Name: "a", Network: "whatsapp", LoginID: login, MessageID: "m9"}); err == nil {
			t.Fatal("a second blob under a taken name was recorded")
		}
		if ok, err := d.SetHostedMediaSize(ctx, "b", 1234); err != nil || !ok {
			t.Fatalf("set size: %v %v", ok, err)
		}
		if ok, err := d.SetHostedMediaSize(ctx, "zz", 1); err != nil || ok {
			t.Fatalf("set size of a missing row: %v %v", ok, err)
		}
		got, err := d.HostedMediaByName(ctx, "b")
		want := HostedMedia{Name: "b", Network: "whatsapp", LoginID: login, MessageID: "m1", Size: 1234, CreatedAt: clk.t}
		if err != nil || got == nil || *got != want {
			t.Fatalf("lookup b = %+v, %v; want %+v", got, err, want)
		}
		if got, err := d.HostedMediaByName(ctx, "zz"); err != nil || got != nil {
			t.Fatalf("lookup of a missing name = %+v, %v", got, err)
		}

		for _, tc := range []struct {
			before time.Time
			limit  int
			want   []string
		}{
			{old, 10, nil}, // strictly before
			{old.Add(time.Millisecond), 10, []string{"a"}},
			{clk.t, 10, []string{"a", "c", "d"}}, // oldest first
			{clk.t, 2, []string{"a", "c"}},
			{clk.t.Add(time.Millisecond), 10, []string{"a", "c", "d", "b"}},
		} {
			if names, err := d.HostedMediaBefore(ctx, tc.before, tc.limit); err != nil || !slices.Equal(names, tc.want) {
				t.Errorf("before %s limit %d: %v %v, want %v", tc.before, tc.limit, names, err, tc.want)
			}
		}

		if names, err := d.HostedMediaOfMessage(ctx, login, "m1"); err != nil || !slices.Equal(names, []string{"a", "b"}) {
			t.Fatalf("of message m1: %v %v", names, err)
		}
		// A revoke deletes a message's blobs one by one (file first, then row).
		for _, name := range []string{"a", "b"} {
			if ok, err := d.DeleteHostedMedia(ctx, name); err != nil || !ok {
				t.Fatalf("delete %s: %v %v", name, ok, err)
			}
		}
		if names, err := d.HostedMediaOfMessage(ctx, login, "m1"); err != nil || len(names) != 0 {
			t.Fatalf("of message m1 after deleting its blobs: %v %v", names, err)
		}
		// The same message id under another login is another message.
		if got, _ := d.HostedMediaByName(ctx, "d"); got == nil {
			t.Fatal("another login's blob was deleted with the message")
		}
		if ok, err := d.DeleteHostedMedia(ctx, "c"); err != nil || !ok {
			t.Fatalf("delete c: %v %v", ok, err)
		}
		if ok, err := d.DeleteHostedMedia(ctx, "c"); err != nil || ok {
			t.Fatalf("delete c again: %v %v", ok, err)
		}
		if names, err := d.HostedMediaBefore(ctx, clk.t.Add(time.Hour), 10); err != nil || !slices.Equal(names, []string{"d"}) {
			t.Fatalf("left: %v %v", names, err)
		}
	})
}

// TestUpgradePathMatchesLatest: a database made at v1 and upgraded step by step ends
// with the same tables, columns and indexes as a new one made from 00-latest.sql.
func TestUpgradePathMatchesLatest(t *testing.T) {
	v1, err := os.ReadFile("testdata/v1-schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{"00-v1.sql": {Data: v1}}
	entries, err := upgradeFiles.ReadDir("upgrades")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "00-latest.sql" {
			continue
		}
		data, err := upgradeFiles.ReadFile("upgrades/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = &fstest.MapFile{Data: data}
	}
	sqltest.Run(t, func(t *testing.T, stepwise *dbutil.Database) {
		ctx := context.Background()
		table := dbutil.BuildUpgradeTable().WithFS(files).Finish()
		if err := stepwise.Child(VersionTable, table, dbutil.ZeroLogger(zerolog.Nop())).Upgrade(ctx); err != nil {
			t.Fatalf("stepwise upgrade: %v", err)
		}
		// The current code sees the stepwise database as up to date.
		open(t, stepwise)

		var fresh *dbutil.Database
		if stepwise.Dialect == dbutil.Postgres {
			fresh = sqltest.Postgres(t)
		} else {
			fresh = sqltest.SQLite(t)
		}
		open(t, fresh)
		a, b := schemaOf(t, stepwise), schemaOf(t, fresh)
		if !slices.Equal(a, b) {
			t.Fatalf("schemas differ\nstepwise: %v\nlatest:   %v", a, b)
		}
		if !slices.Contains(b, "interop_bridge_hosted_media.created_at BIGINT notnull=true") {
			t.Fatalf("schema lacks the hosted media table: %v", b)
		}
	})
}

// schemaOf lists the interop_bridge_ columns and indexes of db, sorted.
func schemaOf(t *testing.T, db *dbutil.Database) []string {
	t.Helper()
	ctx := context.Background()
	var colQuery, idxQuery string
	if db.Dialect == dbutil.Postgres {
		colQuery = `SELECT table_name || '.' || column_name || ' ' || UPPER(data_type) || ' notnull=' ||
			CASE WHEN is_nullable = 'NO' THEN 'true' ELSE 'false' END
			FROM information_schema.columns WHERE table_schema = current_schema() AND table_name LIKE 'interop_bridge_%'`
		idxQuery = `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()
			AND tablename LIKE 'interop_bridge_%' AND indexname NOT LIKE '%_pkey'`
	} else {
		colQuery = `SELECT m.name || '.' || p.name || ' ' || UPPER(p.type) || ' notnull=' ||
			CASE WHEN p."notnull" = 1 THEN 'true' ELSE 'false' END
			FROM sqlite_master m, pragma_table_info(m.name) p
			WHERE m.type = 'table' AND m.name LIKE 'interop_bridge_%'`
		idxQuery = `SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'interop_bridge_%'
			AND name NOT LIKE 'sqlite_autoindex_%'`
	}
	var out []string
	for _, q := range []string{colQuery, idxQuery} {
		rows, err := db.Query(ctx, q)
		names, err := dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[string], err).AsList()
		if err != nil {
			t.Fatalf("failed to read the schema: %v", err)
		}
		out = append(out, names...)
	}
	slices.Sort(out)
	return out
}
