package connector

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/verify"
)

// Verification says how a Matrix user proved they own a phone number (stored with the
// login). It is verify.Method so that the verifiers in connector/verify, which cannot
// import this package, satisfy NumberVerifier.
type Verification = verify.Method

const (
	// VerifiedByThreepid: the number is a verified msisdn threepid of the Matrix user
	// on the homeserver (Synapse admin API, identity.synapse_admin_token).
	VerifiedByThreepid = verify.MethodThreepid
	// VerifiedByAdmin: a bridge admin assigned the number to the Matrix user
	// (identity.admin_assigned_numbers).
	VerifiedByAdmin = verify.MethodAdminAssigned
	// Unverified: no proof; only possible with identity.allow_unverified_numbers.
	Unverified = verify.MethodUnverified
)

// ErrNumberNotVerified is returned by a NumberVerifier that cannot vouch for a number.
var ErrNumberNotVerified = verify.ErrNotVerified

// NumberVerifier proves that a Matrix user owns a phone number. Meta enlists the
// number as a third-party account that receives its chats, so the bridge must never
// let someone claim a number that is not theirs.
type NumberVerifier interface {
	// Method names the proof this verifier gives, stored with the login.
	Method() Verification
	// VerifyNumber returns nil when mxid owns number (E.164 digits without "+"),
	// ErrNumberNotVerified when this verifier cannot vouch for it, and any other
	// error when the check itself failed.
	VerifyNumber(ctx context.Context, mxid id.UserID, number string) error
}

// configuredVerifiers builds the verifiers the identity config asks for: the Synapse
// threepid check when an admin token is set, and admin assignments when allowed.
func (c *InteropConnector) configuredVerifiers(bridge *bridgev2.Bridge) []NumberVerifier {
	var out []NumberVerifier
	if token := c.Config.Identity.SynapseAdminToken; token != "" {
		mx, ok := realMatrix(bridge)
		if !ok {
			bridge.Log.Warn().Msg("identity.synapse_admin_token is set, but the Matrix connector has no homeserver address")
		} else if v, err := verify.NewThreepid(mx.Config.Homeserver.Address, token, nil); err != nil {
			bridge.Log.Err(err).Msg("Failed to set up the Synapse threepid check")
		} else {
			out = append(out, v)
		}
	}
	if c.Config.Identity.AdminAssignedNumbers {
		out = append(out, &verify.Assigned{DB: c.DB})
	}
	return out
}

func (c *InteropConnector) hasVerifier(method Verification) bool {
	for _, v := range c.Verifiers {
		if v.Method() == method {
			return true
		}
	}
	return false
}

func (c *InteropConnector) warnMissingVerifiers(ctx context.Context) {
	log := zerolog.Ctx(ctx)
	if c.Config.Identity.SynapseAdminToken != "" && !c.hasVerifier(VerifiedByThreepid) {
		log.Warn().Msg("identity.synapse_admin_token is set, but the threepid check could not be set up (see above); logins relying on it will be refused")
	}
	if c.Config.Identity.AdminAssignedNumbers && !c.hasVerifier(VerifiedByAdmin) {
		log.Warn().Msg("identity.admin_assigned_numbers is on, but the assignment check is missing; logins relying on it will be refused")
	}
}

// verifyNumber asks every verifier in turn and falls back to no proof only when the
// config explicitly allows it. It never lets a failing check count as proof.
func (c *InteropConnector) verifyNumber(ctx context.Context, mxid id.UserID, number string) (Verification, error) {
	for _, v := range c.Verifiers {
		err := v.VerifyNumber(ctx, mxid, number)
		switch {
		case err == nil:
			return v.Method(), nil
		case !errors.Is(err, ErrNumberNotVerified):
			return "", fmt.Errorf("failed to check the number with %s: %w", v.Method(), err)
		}
	}
	if c.Config.Identity.AllowUnverifiedNumbers {
		zerolog.Ctx(ctx).Warn().
			Stringer("user_mxid", mxid).
			Msg("Accepting an unverified phone number because identity.allow_unverified_numbers is on")
		return Unverified, nil
	}
	return "", ErrNumberNotVerified
}
