package connector

import (
	"context"
	"errors"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/verify"
	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// An admin's assignment is per network: it lets its user log in on that network
// only, and nobody else with that number.
func TestPrepareLoginWithAssignments(t *testing.T) {
	ctx := context.Background()
	db := bridgedb.New(sqltest.SQLite(t), zerolog.Nop())
	if err := db.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	const alice, bob = id.UserID("@alice:example.org"), id.UserID("@bob:example.org")
	if err := db.Assign(ctx, "whatsapp", "491701234567", alice, "@admin:example.org"); err != nil {
		t.Fatal(err)
	}
	c := newTestConnector(t, func(c *config.NetworkConfig) {
		c.Messenger = testSection(12, "Messenger")
		c.Messenger.CallbackSecret += "-messenger" // each network has its own secret
		c.Identity = config.IdentityConfig{AdminAssignedNumbers: true}
	})
	c.Verifiers = []NumberVerifier{&verify.Assigned{DB: db}}

	tests := []struct {
		name    string
		mxid    id.UserID
		network string
		wantErr bool
	}{
		{"assigned user, assigned network", alice, "whatsapp", false},
		{"assigned user, other network", alice, "messenger", true},
		{"someone else", bob, "whatsapp", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ul, err := c.prepareLogin(ctx, tc.mxid, map[string]string{loginFieldNetwork: tc.network, loginFieldNumber: "+49 170 1234567"})
			if tc.wantErr {
				if !errors.Is(err, ErrLoginUnverified) {
					t.Fatalf("got %v, want ErrLoginUnverified", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if meta := ul.Metadata.(*UserLoginMetadata); meta.Verification != VerifiedByAdmin {
				t.Fatalf("verification %q, want %q", meta.Verification, VerifiedByAdmin)
			}
		})
	}
}
