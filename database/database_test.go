package database

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func open(t *testing.T, raw *dbutil.Database) (*Database, *clock) {
	t.Helper()
	clk := &clock{t: time.UnixMilli(1_700_000_000_000)}
	d := New(raw, zerolog.New(zerolog.NewTestWriter(t)))
	d.Now = clk.Now
	if err := d.Upgrade(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d, clk
}

// TestUpgradeBesideInteropStore: the bridge's tables share one database with the interop
// store; each has its own version table and upgrading twice is harmless.
func TestUpgradeBesideInteropStore(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		if err := sqlstore.New(raw, zerolog.Nop()).Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		d, _ := open(t, raw)
		if err := d.Upgrade(ctx); err != nil {
			t.Fatalf("second upgrade: %v", err)
		}
		for _, table := range []string{VersionTable, "interop_store_version", "interop_bridge_login_token",
			"interop_bridge_number", "interop_bridge_as_txn", "interop_bridge_incoming", "interop_bridge_hosted_media", "interop_bridge_as_cursor", "interop_account"} {
			if ok, err := raw.TableExists(ctx, table); err != nil || !ok {
				t.Errorf("table %s exists=%v err=%v", table, ok, err)
			}
		}
		var version int
		if err := raw.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&version); err != nil || version != 4 {
			t.Errorf("schema version %d, err %v", version, err)
		}
	})
}

func TestTokens(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d, clk := open(t, raw)
		const wa, acc = "whatsapp", "12-491701234567@interop"
		token, exp, err := d.MintToken(ctx, wa, acc, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if len(token) != 43 || !exp.Equal(clk.t.Add(time.Hour)) {
			t.Fatalf("token of %d chars expiring %s", len(token), exp)
		}
		var stored int
		if err := raw.QueryRow(ctx, `SELECT COUNT(*) FROM interop_bridge_login_token WHERE token_hash=$1`, []byte(token)).Scan(&stored); err != nil || stored != 0 {
			t.Fatalf("plaintext token stored (%d rows, %v)", stored, err)
		}
		other, _, err := d.MintToken(ctx, "messenger", acc, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, network, jid, token string
			advance                   time.Duration
			valid                     bool
		}{
			{"good", wa, acc, token, 0, true},
			{"good just before expiry", wa, acc, token, time.Hour - time.Millisecond, true},
			{"expired", wa, acc, token, time.Hour, false},
			{"wrong token", wa, acc, token + "x", 0, false},
			{"empty token", wa, acc, "", 0, false},
			{"other network's token", wa, acc, other, 0, false},
			{"other network", "messenger", acc, token, 0, false},
			{"unknown account", wa, "12-491709999999@interop", token, 0, false},
			{"messenger token on messenger", "messenger", acc, other, 0, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				saved := clk.t
				clk.t = clk.t.Add(tc.advance)
				defer func() { clk.t = saved }()
				valid, at, err := d.CheckToken(ctx, tc.network, tc.jid, tc.token)
				if err != nil {
					t.Fatal(err)
				}
				if valid != tc.valid {
					t.Fatalf("valid=%v, want %v", valid, tc.valid)
				}
				if valid && at.IsZero() || !valid && !at.IsZero() {
					t.Fatalf("expires_at %s with valid=%v", at, valid)
				}
			})
		}

		// A new sign-in shuts out the old token; the other network is untouched.
		second, _, err := d.MintToken(ctx, wa, acc, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if valid, _, _ := d.CheckToken(ctx, wa, acc, token); valid {
			t.Error("old token still valid after a new one was minted")
		}
		if valid, _, _ := d.CheckToken(ctx, wa, acc, second); !valid {
			t.Error("new token not valid")
		}
		if n, err := d.RevokeTokens(ctx, wa, acc); err != nil || n != 1 {
			t.Fatalf("RevokeTokens = %d, %v; want 1", n, err)
		}
		if valid, _, _ := d.CheckToken(ctx, wa, acc, second); valid {
			t.Error("revoked token still valid")
		}
		if valid, _, _ := d.CheckToken(ctx, "messenger", acc, other); !valid {
			t.Error("revoking WhatsApp tokens revoked the Messenger one")
		}
		if n, err := d.RevokeTokens(ctx, wa, acc); err != nil || n != 0 {
			t.Fatalf("second RevokeTokens = %d, %v; want 0", n, err)
		}

		if _, _, err := d.MintToken(ctx, wa, acc, 0); err == nil {
			t.Error("minted a token with no lifetime")
		}
		// Both WhatsApp tokens are revoked; the Messenger one is live until it expires.
		if n, err := d.PruneTokens(ctx, clk.t.Add(time.Second)); err != nil || n != 2 {
			t.Fatalf("PruneTokens = %d, %v; want 2", n, err)
		}
		if valid, _, _ := d.CheckToken(ctx, "messenger", acc, other); !valid {
			t.Error("pruning removed a live token")
		}
	})
}

func TestTokensAreUnique(t *testing.T) {
	d, _ := open(t, sqltest.SQLite(t))
	seen := map[string]bool{}
	for range 50 {
		tok, _, err := d.MintToken(context.Background(), "whatsapp", "1-4917@interop", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok] {
			t.Fatalf("token %q minted twice", tok)
		}
		seen[tok] = true
	}
}

func TestNumbers(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d, clk := open(t, raw)
		const alice, bob, admin = id.UserID("@alice:example.org"), id.UserID("@bob:example.org"), id.UserID("@admin:example.org")
		steps := []struct {
			network, number string
			mxid            id.UserID
			want            error
		}{
			{"whatsapp", "491701234567", alice, nil},
			{"whatsapp", "491701234567", alice, nil}, // again: harmless
			{"whatsapp", "491701234567", bob, ErrNumberTaken},
			{"messenger", "491701234567", alice, nil},
			{"whatsapp", "33612345678", alice, nil},
			{"whatsapp", "491709999999", bob, nil},
		}
		for i, s := range steps {
			if err := d.Assign(ctx, s.network, s.number, s.mxid, admin); !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
				t.Fatalf("step %d: Assign = %v, want %v", i, err, s.want)
			}
		}
		if got, err := d.AssignedTo(ctx, "whatsapp", "491701234567"); err != nil || got != alice {
			t.Errorf("AssignedTo = %q, %v", got, err)
		}
		if got, err := d.AssignedTo(ctx, "whatsapp", "4900"); err != nil || got != "" {
			t.Errorf("AssignedTo(unassigned) = %q, %v", got, err)
		}
		nums, err := d.NumbersOf(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, a := range nums {
			keys = append(keys, a.Network+"/"+a.Number)
			if a.MXID != alice || a.AssignedBy != admin || !a.AssignedAt.Equal(clk.t) {
				t.Errorf("assignment %+v", a)
			}
		}
		if want := []string{"messenger/491701234567", "whatsapp/33612345678", "whatsapp/491701234567"}; !slices.Equal(keys, want) {
			t.Errorf("NumbersOf = %v, want %v", keys, want)
		}
		if ok, err := d.Unassign(ctx, "whatsapp", "491701234567"); err != nil || !ok {
			t.Fatalf("Unassign = %v, %v", ok, err)
		}
		if ok, err := d.Unassign(ctx, "whatsapp", "491701234567"); err != nil || ok {
			t.Fatalf("second Unassign = %v, %v", ok, err)
		}
		if err := d.Assign(ctx, "whatsapp", "491701234567", bob, admin); err != nil {
			t.Fatalf("assigning a freed number: %v", err)
		}
		if nums, _ := d.NumbersOf(ctx, id.UserID("@nobody:example.org")); len(nums) != 0 {
			t.Errorf("NumbersOf(nobody) = %v", nums)
		}
	})
}

func TestASTxn(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d, clk := open(t, raw)
		evt := func(id, body string) TxnEvent { return TxnEvent{EventID: id, Body: json.RawMessage(body)} }
		if err := d.PutTxn(ctx, "10", []TxnEvent{evt("$a", `{"n":1}`), evt("$b", `{"n":2}`)}); err != nil {
			t.Fatal(err)
		}
		clk.t = clk.t.Add(time.Second)
		// "9" sorts before "10" as text; arrival order must win anyway.
		if err := d.PutTxn(ctx, "9", []TxnEvent{evt("$c", `{"n":3}`)}); err != nil {
			t.Fatal(err)
		}
		// A retried transaction queues nothing twice.
		if err := d.PutTxn(ctx, "10", []TxnEvent{evt("$a", `{"n":1}`), evt("$b", `{"n":2}`)}); err != nil {
			t.Fatal(err)
		}
		// A bad body refuses the whole transaction.
		if err := d.PutTxn(ctx, "11", []TxnEvent{evt("$d", `{}`), evt("$e", `{`)}); err == nil {
			t.Fatal("stored an event whose body is not JSON")
		}
		ids := func(limit int) []string {
			t.Helper()
			evts, err := d.Unhandled(ctx, limit)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, e := range evts {
				out = append(out, e.TxnID+e.EventID+string(e.Body))
			}
			return out
		}
		if got, want := ids(0), []string{`10$a{"n":1}`, `10$b{"n":2}`, `9$c{"n":3}`}; !slices.Equal(got, want) {
			t.Fatalf("Unhandled = %v, want %v", got, want)
		}
		if got := ids(2); len(got) != 2 {
			t.Fatalf("Unhandled(2) = %v", got)
		}
		if err := d.MarkHandled(ctx, "$b"); err != nil {
			t.Fatal(err)
		}
		if err := d.MarkHandled(ctx, "$unknown"); err != nil {
			t.Fatal(err)
		}
		if got, want := ids(0), []string{`10$a{"n":1}`, `9$c{"n":3}`}; !slices.Equal(got, want) {
			t.Fatalf("after MarkHandled: %v, want %v", got, want)
		}
		evts, _ := d.Unhandled(ctx, 1)
		if !evts[0].ReceivedAt.Equal(clk.t.Add(-time.Second)) {
			t.Errorf("received_at %s", evts[0].ReceivedAt)
		}
		if n, err := d.PruneHandled(ctx, clk.t.Add(time.Second)); err != nil || n != 1 {
			t.Fatalf("PruneHandled = %d, %v", n, err)
		}
		if got := ids(0); len(got) != 2 {
			t.Fatalf("pruning touched unhandled events: %v", got)
		}
	})
}
