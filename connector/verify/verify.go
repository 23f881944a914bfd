// Package verify decides whether a Matrix user may claim a phone number: Meta enlists
// the number as a third-party account that receives its chats, so the bridge must
// never let anyone claim a number that is not theirs. It holds the verifiers (a
// verified msisdn threepid on Synapse, a bridge admin's assignment, and the explicit
// "no proof" of allow_unverified_numbers) and the admin commands that manage
// assignments.
//
// It must not import package connector (the connector imports it). Its verifiers have
// the method set of connector.NumberVerifier; for them to satisfy that interface the
// connector declares `type Verification = verify.Method` and
// `ErrNumberNotVerified = verify.ErrNotVerified` (aliases, so the names stay the
// connector's), or wraps them. The rest of the wiring, in the connector:
//
//	// Init: the verifiers the identity config asks for, and the commands.
//	verify.NewThreepid(bridge.Matrix.(*matrix.Connector).Config.Homeserver.Address, cfg.Identity.SynapseAdminToken, nil)
//	&verify.Assigned{DB: db}
//	admin := &verify.Admin{DB: db, Networks: cfg.EnabledNetworks()}
//	bridge.Commands.(*commands.Processor).AddHandlers(admin.Commands()...)
//	// Start (bridgev2 builds the provisioning router when the Matrix side starts):
//	admin.RegisterProvisioning(bridge.Matrix.(bridgev2.MatrixConnectorWithProvisioning).GetProvisioning())
//	// prepareLogin, before asking the verifiers (assignments are per network):
//	ctx = verify.WithNetwork(ctx, string(network))
package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
)

// Method names the proof a verifier gives; it is stored with the login.
type Method string

const (
	// MethodThreepid: the number is a validated msisdn threepid of the user on Synapse.
	MethodThreepid Method = "threepid"
	// MethodAdminAssigned: a bridge admin assigned the number to the user.
	MethodAdminAssigned Method = "admin_assigned"
	// MethodUnverified: no proof at all (identity.allow_unverified_numbers).
	MethodUnverified Method = "unverified"
)

// ErrNotVerified: the verifier cannot vouch that the user owns the number. Any other
// error from VerifyNumber means the check itself failed and must not count as proof.
var ErrNotVerified = errors.New("phone number is not verified for this Matrix user")

// ErrNoNetwork: the Assigned verifier was asked without a network in the context.
var ErrNoNetwork = errors.New("no network given for the number assignment check")

var (
	_ verifier = (*Threepid)(nil)
	_ verifier = (*Assigned)(nil)
	_ verifier = Unverified{}
)

// verifier is connector.NumberVerifier's method set, so that a change there breaks the
// build here rather than at the wiring.
type verifier interface {
	Method() Method
	VerifyNumber(ctx context.Context, mxid id.UserID, number string) error
}

type networkKey struct{}

// WithNetwork tells verifiers which network ("whatsapp", "messenger") the number is
// claimed on. Admin assignments are per network, and NumberVerifier.VerifyNumber has
// no network argument, so the login passes it this way.
func WithNetwork(ctx context.Context, network string) context.Context {
	return context.WithValue(ctx, networkKey{}, network)
}

// NetworkFrom returns the network set by WithNetwork, or "".
func NetworkFrom(ctx context.Context) string {
	network, _ := ctx.Value(networkKey{}).(string)
	return network
}

// Assigned accepts exactly the (network, number, user) triples a bridge admin stored
// with the assign-number command.
type Assigned struct {
	DB *database.Database
}

// Method is MethodAdminAssigned.
func (a *Assigned) Method() Method { return MethodAdminAssigned }

// VerifyNumber checks the assignment on the network set with WithNetwork; without one
// it fails (ErrNoNetwork) rather than guess, since an assignment on one network says
// nothing about the other.
func (a *Assigned) VerifyNumber(ctx context.Context, mxid id.UserID, number string) error {
	network := NetworkFrom(ctx)
	if network == "" {
		return ErrNoNetwork
	}
	return a.VerifyNumberOn(ctx, network, mxid, number)
}

// VerifyNumberOn checks the assignment of number on network to mxid.
func (a *Assigned) VerifyNumberOn(ctx context.Context, network string, mxid id.UserID, number string) error {
	holder, err := a.DB.AssignedTo(ctx, network, strings.TrimPrefix(number, "+"))
	if err != nil {
		return fmt.Errorf("failed to check the number assignment: %w", err)
	}
	if holder == "" || holder != mxid {
		return ErrNotVerified
	}
	return nil
}

// Unverified accepts every number. It exists only for identity.allow_unverified_numbers;
// its Method makes the connector warn loudly about each login that uses it.
type Unverified struct{}

// Method is MethodUnverified.
func (Unverified) Method() Method { return MethodUnverified }

// VerifyNumber always accepts.
func (Unverified) VerifyNumber(context.Context, id.UserID, string) error { return nil }
