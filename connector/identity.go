package connector

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
)

// Verification says how a Matrix user proved they own a phone number.
type Verification string

const (
	// VerifiedByThreepid: the number is a verified msisdn threepid of the Matrix user
	// on the homeserver (Synapse admin API, identity.synapse_admin_token).
	VerifiedByThreepid Verification = "threepid"
	// VerifiedByAdmin: a bridge admin assigned the number to the Matrix user
	// (identity.admin_assigned_numbers).
	VerifiedByAdmin Verification = "admin_assigned"
	// Unverified: no proof; only possible with identity.allow_unverified_numbers.
	Unverified Verification = "unverified"
)

// ErrNumberNotVerified is returned by a NumberVerifier that cannot vouch for a number.
var ErrNumberNotVerified = errors.New("phone number is not verified for this Matrix user")

// NumberVerifier proves that a Matrix user owns a phone number. Meta enlists the
// number as a third-party account that receives its chats, so the bridge must never
// let someone claim a number that is not theirs.
//
// TODO(identity): two implementations belong here, appended to
// InteropConnector.Verifiers by configuredVerifiers:
//   - threepid: when identity.synapse_admin_token is set, GET
//     {homeserver}/_synapse/admin/v2/users/{mxid} and accept when "threepids" holds
//     {"medium": "msisdn", "address": number} (Synapse stores msisdns as digits
//     without "+") with a validated_at;
//   - admin assignment: when identity.admin_assigned_numbers is on, a bridge admin
//     command stores (mxid, number) in the connector's own table, and the verifier
//     accepts exactly those pairs.
type NumberVerifier interface {
	// Method names the proof this verifier gives, stored with the login.
	Method() Verification
	// VerifyNumber returns nil when mxid owns number (E.164 digits without "+"),
	// ErrNumberNotVerified when this verifier cannot vouch for it, and any other
	// error when the check itself failed.
	VerifyNumber(ctx context.Context, mxid id.UserID, number string) error
}

// configuredVerifiers builds the verifiers the identity config asks for. None exists
// yet (see the TODO on NumberVerifier); Start warns about the ones configured but missing.
func (c *InteropConnector) configuredVerifiers() []NumberVerifier {
	return nil
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
		log.Warn().Msg("identity.synapse_admin_token is set, but this build cannot check threepids yet; logins relying on it will be refused")
	}
	if c.Config.Identity.AdminAssignedNumbers && !c.hasVerifier(VerifiedByAdmin) {
		log.Warn().Msg("identity.admin_assigned_numbers is on, but this build has no assignment command yet; logins relying on it will be refused")
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
