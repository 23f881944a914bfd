package database

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"testing"

	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

func TestHandledOf(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d, _ := open(t, raw)
		body := json.RawMessage(`{"type":"m.room.message"}`)
		if err := d.PutTxn(ctx, "t1", []TxnEvent{{EventID: "$a", Body: body}, {EventID: "$b", Body: body}}); err != nil {
			t.Fatal(err)
		}
		if err := d.MarkHandled(ctx, "$a"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			ids  []string
			want map[string]bool
		}{
			{"none", nil, map[string]bool{}},
			{"handled, waiting and unknown", []string{"$a", "$b", "$never"}, map[string]bool{"$a": true, "$b": false}},
			{"unknown only", []string{"$never"}, map[string]bool{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := d.HandledOf(ctx, tc.ids)
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(got, tc.want) {
					t.Errorf("HandledOf(%q) = %v, want %v", tc.ids, got, tc.want)
				}
			})
		}
	})
}

// Transactions stored at the same moment (several homeserver connections, a replay
// racing a new transaction) must still get distinct arrival numbers, or their replay
// order is arbitrary.
func TestPutTxnConcurrentSeqsAreDistinct(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		d, _ := open(t, raw)
		ctx := context.Background()
		const writers, perTxn = 6, 5
		errs := make(chan error, writers)
		for w := range writers {
			go func() {
				var evts []TxnEvent
				for i := range perTxn {
					evts = append(evts, TxnEvent{EventID: fmt.Sprintf("$w%d-%d", w, i), Body: []byte(`{}`)})
				}
				errs <- d.PutTxn(ctx, fmt.Sprintf("txn%d", w), evts)
			}()
		}
		for range writers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		var rows, distinct int
		if err := raw.QueryRow(ctx, `SELECT COUNT(*), COUNT(DISTINCT seq) FROM interop_bridge_as_txn`).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows != writers*perTxn || distinct != rows {
			t.Fatalf("%d events stored with %d distinct arrival numbers, want %d and %d", rows, distinct, writers*perTxn, writers*perTxn)
		}
	})
}
