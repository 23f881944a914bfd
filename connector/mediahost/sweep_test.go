package mediahost

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

const retention = 30 * 24 * time.Hour

func TestSweep(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		f := newFixture(t, raw)
		ctx := context.Background()
		oldestCreated := f.clk.Now()
		oldest, oldestName := f.host(t, "whatsapp", "m1", []byte("oldest"))
		f.clk.Add(time.Hour)
		old, oldName := f.host(t, "messenger", "m2", []byte("old"))
		f.clk.Add(retention - time.Minute)
		recent, recentName := f.host(t, "whatsapp", "m3", []byte("recent"))
		f.clk.Add(2 * time.Minute)
		// A row with a name no store accepts (a bug, or written by hand) must not block
		// the sweep.
		if err := f.db.InsertHostedMedia(ctx, database.HostedMedia{Name: "../bad", Network: "whatsapp",
			LoginID: login, MessageID: "bad", CreatedAt: oldestCreated}); err != nil {
			t.Fatal(err)
		}
		// Now the oldest is past the retention period by an hour and a minute, the old
		// one by a minute, the recent one is a minute old.
		n, err := f.h.Sweep(ctx, f.clk.Now().Add(-retention))
		if err != nil || n != 3 {
			t.Fatalf("Sweep = %d, %v; want 3", n, err)
		}
		if rec, err := f.db.HostedMediaByName(ctx, "../bad"); err != nil || rec != nil {
			t.Fatalf("the row with a bad name is still there: %+v %v", rec, err)
		}
		for _, c := range []struct {
			hb     HostedBlob
			name   string
			secret []byte
			gone   bool
		}{{oldest, oldestName, waSecret, true}, {old, oldName, msgrSecret, true}, {recent, recentName, waSecret, false}} {
			_, statErr := os.Stat(filepath.Join(f.dir, c.name))
			rec, err := f.db.HostedMediaByName(ctx, c.name)
			if err != nil {
				t.Fatal(err)
			}
			if (statErr != nil) != c.gone || (rec == nil) != c.gone {
				t.Errorf("%s: file err %v, row %+v; want gone=%v", c.name, statErr, rec, c.gone)
			}
			want := 200
			if c.gone {
				want = 404
			}
			if w := f.fetch("GET", c.hb.DirectPath, c.secret, f.clk.Now(), nil); w.Code != want {
				t.Errorf("%s: fetch %d, want %d", c.name, w.Code, want)
			}
		}
		if n, err := f.h.Sweep(ctx, f.clk.Now().Add(-retention)); err != nil || n != 0 {
			t.Fatalf("second Sweep = %d, %v", n, err)
		}
	})
}

// TestSweepMany: more expired blobs than one batch are all deleted in one sweep.
func TestSweepMany(t *testing.T) {
	f := newFixture(t, sqltest.SQLite(t))
	ctx := context.Background()
	const count = sweepBatch + 7
	for range count {
		f.host(t, "whatsapp", "m", []byte("x"))
	}
	f.clk.Add(retention + time.Second)
	if n, err := f.h.Sweep(ctx, f.clk.Now().Add(-retention)); err != nil || n != count {
		t.Fatalf("Sweep = %d, %v; want %d", n, err, count)
	}
	if left := listDir(t, f.dir); len(left) != 0 {
		t.Fatalf("%d files left", len(left))
	}
}

// TestSweepLoop: the loop sweeps soon after it starts, keeps sweeping, cleans the
// store's leftovers and stops with its context.
func TestSweepLoop(t *testing.T) {
	f := newFixture(t, sqltest.SQLite(t))
	_, expired := f.host(t, "whatsapp", "m1", []byte("expired"))
	f.clk.Add(retention + time.Second)
	_, kept := f.host(t, "whatsapp", "m2", []byte("kept"))
	leftover := filepath.Join(f.dir, tempPrefix+"crashed")
	if err := os.WriteFile(leftover, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	longAgo := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(leftover, longAgo, longAgo); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.h.SweepLoop(ctx, 20*time.Millisecond, retention)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if left := listDir(t, f.dir); slices.Equal(left, []string{kept}) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("store holds %v, want only %s (expired %s)", left, kept, expired)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A blob that expires while the loop runs goes at a later sweep.
	f.clk.Add(retention + time.Second)
	for len(listDir(t, f.dir)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the loop did not sweep again: %v", listDir(t, f.dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("SweepLoop did not stop with its context")
	}
}
