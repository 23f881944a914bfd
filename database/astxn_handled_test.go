package database

import (
	"context"
	"encoding/json"
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
