package verify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/commands"
	bridgedb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

const (
	alice = id.UserID("@alice:example.org")
	bob   = id.UserID("@bob:example.org")
	admin = id.UserID("@admin:example.org")
)

func openDB(t *testing.T, raw *dbutil.Database) *database.Database {
	t.Helper()
	d := database.New(raw, zerolog.New(zerolog.NewTestWriter(t)))
	d.Now = func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	if err := d.Upgrade(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAssigned(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		d := openDB(t, raw)
		if err := d.Assign(ctx, "whatsapp", "491701234567", alice, admin); err != nil {
			t.Fatal(err)
		}
		v := &Assigned{DB: d}
		if v.Method() != MethodAdminAssigned {
			t.Fatalf("Method = %q", v.Method())
		}
		for _, tc := range []struct {
			name, network string
			mxid          id.UserID
			number        string
			want          error
		}{
			{"assigned", "whatsapp", alice, "491701234567", nil},
			{"assigned, with +", "whatsapp", alice, "+491701234567", nil},
			{"another user", "whatsapp", bob, "491701234567", ErrNotVerified},
			{"other network", "messenger", alice, "491701234567", ErrNotVerified},
			{"unassigned number", "whatsapp", alice, "491709999999", ErrNotVerified},
			{"no network", "", alice, "491701234567", ErrNoNetwork},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx := ctx
				if tc.network != "" {
					ctx = WithNetwork(ctx, tc.network)
				}
				err := v.VerifyNumber(ctx, tc.mxid, tc.number)
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("VerifyNumber = %v, want %v", err, tc.want)
				}
			})
		}
	})
}

func TestAssignedDatabaseError(t *testing.T) {
	raw := sqltest.SQLite(t)
	d := openDB(t, raw)
	if _, err := raw.Exec(context.Background(), "DROP TABLE interop_bridge_number"); err != nil {
		t.Fatal(err)
	}
	err := (&Assigned{DB: d}).VerifyNumber(WithNetwork(context.Background(), "whatsapp"), alice, "491701234567")
	if err == nil || errors.Is(err, ErrNotVerified) {
		t.Fatalf("VerifyNumber on a broken database = %v, want a failed check", err)
	}
}

func TestUnverified(t *testing.T) {
	var v Unverified
	if v.Method() != MethodUnverified || v.VerifyNumber(context.Background(), alice, "4917") != nil {
		t.Fatal("Unverified must accept anything and say so")
	}
}

// fakeBot records the notices the command handlers send.
type fakeBot struct {
	bridgev2.MatrixAPI // not called; a nil embedded interface panics if it is
	replies            []string
}

func (b *fakeBot) SendMessage(_ context.Context, _ id.RoomID, _ event.Type, content *event.Content, _ *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	b.replies = append(b.replies, content.Parsed.(*event.MessageEventContent).Body)
	return &mautrix.RespSendEvent{EventID: "$reply"}, nil
}

// run runs one command line through its FullHandler, as the processor would, and
// returns the reply.
func run(t *testing.T, a *Admin, caller id.UserID, isAdmin bool, line string) string {
	t.Helper()
	fields := strings.Fields(line)
	var handler commands.CommandHandler
	for _, h := range a.Commands() {
		if h.GetName() == fields[0] {
			handler = h
		}
	}
	if handler == nil {
		t.Fatalf("no command %q", fields[0])
	}
	bot := &fakeBot{}
	log := zerolog.New(zerolog.NewTestWriter(t))
	ce := &commands.Event{
		Bot:     bot,
		Bridge:  &bridgev2.Bridge{Config: &bridgeconfig.BridgeConfig{CommandPrefix: "!meta"}},
		User:    &bridgev2.User{User: &bridgedb.User{MXID: caller}, Permissions: bridgeconfig.Permissions{Admin: isAdmin}},
		Command: fields[0],
		Args:    fields[1:],
		RawArgs: strings.TrimSpace(strings.TrimPrefix(line, fields[0])),
		Ctx:     log.WithContext(context.Background()),
		Log:     &log,
	}
	handler.Run(ce)
	if len(bot.replies) != 1 {
		t.Fatalf("%q: %d replies: %q", line, len(bot.replies), bot.replies)
	}
	return bot.replies[0]
}

func TestCommands(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		d := openDB(t, raw)
		a := &Admin{DB: d, Networks: []string{"whatsapp"}}
		for _, h := range a.Commands() {
			if !h.(*commands.FullHandler).RequiresAdmin {
				t.Errorf("%s does not require admin", h.GetName())
			}
		}
		steps := []struct {
			caller  id.UserID
			admin   bool
			line    string
			want    []string // substrings of the reply
			wantNot string   // must not appear
		}{
			{bob, false, "assign-number whatsapp +491709999999 @bob:example.org", []string{"limited to bridge administrators"}, ""},
			{admin, true, "assign-number whatsapp", []string{"Usage", "!meta assign-number"}, ""},
			{admin, true, "assign-number telegram +491701234567 @alice:example.org", []string{"unknown network"}, ""},
			{admin, true, "assign-number messenger +491701234567 @alice:example.org", []string{"not enabled"}, ""},
			{admin, true, "assign-number whatsapp 12ab @alice:example.org", []string{"invalid phone number"}, ""},
			{admin, true, "assign-number whatsapp +15551234567 @alice:example.org", []string{"not a number in the EEA"}, ""},
			{admin, true, "assign-number whatsapp +491701234567 alice", []string{"invalid Matrix user ID"}, ""},
			{admin, true, "assign-number WhatsApp +491701234567 @alice:example.org", []string{"Assigned", "@alice:example.org", "whatsapp"}, ""},
			{admin, true, "assign-number whatsapp 00491701234567 @alice:example.org", []string{"Assigned"}, ""}, // again: harmless
			{admin, true, "assign-number whatsapp +491701234567 @bob:example.org", []string{"already assigned to `@alice:example.org`", "!meta unassign-number"}, ""},
			{admin, true, "list-numbers @alice:example.org", []string{"Numbers assigned to `@alice:example.org`", "whatsapp", "@admin:example.org", "2023-11-14"}, ""},
			{admin, true, "list-numbers", []string{"No numbers are assigned to `@admin:example.org`"}, ""},
			{admin, true, "list-numbers nobody", []string{"invalid Matrix user ID"}, ""},
			{bob, false, "list-numbers @alice:example.org", []string{"limited to bridge administrators"}, "491"},
			{bob, false, "unassign-number whatsapp +491701234567", []string{"limited to bridge administrators"}, ""},
			{admin, true, "unassign-number whatsapp", []string{"Usage"}, ""},
			{admin, true, "unassign-number whatsapp +491709999999", []string{"not assigned to anyone"}, ""},
			{admin, true, "unassign-number whatsapp +491701234567", []string{"Unassigned", "from `@alice:example.org`"}, ""},
			{admin, true, "list-numbers @alice:example.org", []string{"No numbers are assigned"}, ""},
			{admin, true, "assign-number whatsapp +491701234567 @bob:example.org", []string{"Assigned", "@bob:example.org"}, ""},
		}
		for i, s := range steps {
			reply := run(t, a, s.caller, s.admin, s.line)
			for _, w := range s.want {
				if !strings.Contains(reply, w) {
					t.Errorf("step %d %q: reply %q lacks %q", i, s.line, reply, w)
				}
			}
			if s.wantNot != "" && strings.Contains(reply, s.wantNot) {
				t.Errorf("step %d %q: reply %q shows %q", i, s.line, reply, s.wantNot)
			}
		}
		// The commands changed what the verifier accepts.
		v, ctx := &Assigned{DB: d}, WithNetwork(context.Background(), "whatsapp")
		if err := v.VerifyNumber(ctx, bob, "491701234567"); err != nil {
			t.Errorf("bob after reassignment: %v", err)
		}
		if err := v.VerifyNumber(ctx, alice, "491701234567"); !errors.Is(err, ErrNotVerified) {
			t.Errorf("alice after unassignment: %v", err)
		}
	})
}

func TestCommandDatabaseError(t *testing.T) {
	raw := sqltest.SQLite(t)
	a := &Admin{DB: openDB(t, raw), Networks: []string{"whatsapp"}}
	if _, err := raw.Exec(context.Background(), "DROP TABLE interop_bridge_number"); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"assign-number whatsapp +491701234567 @alice:example.org",
		"unassign-number whatsapp +491701234567",
		"list-numbers",
	} {
		reply := run(t, a, admin, true, line)
		if !strings.Contains(reply, "database error") || strings.Contains(reply, "interop_bridge_number") {
			t.Errorf("%q: reply %q", line, reply)
		}
	}
}
