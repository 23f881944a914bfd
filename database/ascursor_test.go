package database

import (
	"context"
	"testing"

	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

func TestASCursor(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d, _ := open(t, raw)
		steps := []struct {
			set, name, want string
		}{
			{"", "catchup", ""},
			{"s1_2_3", "catchup", "s1_2_3"},
			{"s9_9_9", "catchup", "s9_9_9"},
			{"", "other", ""},
		}
		for _, st := range steps {
			if st.set != "" {
				if err := d.SetASCursor(ctx, st.name, st.set); err != nil {
					t.Fatal(err)
				}
			}
			got, err := d.ASCursor(ctx, st.name)
			if err != nil {
				t.Fatal(err)
			}
			if got != st.want {
				t.Errorf("cursor %s after setting %q = %q, want %q", st.name, st.set, got, st.want)
			}
		}
	})
}
