package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/database"
)

// Admin manages number assignments for bridge admins: the assign-number,
// unassign-number and list-numbers commands, and the same operations as plain
// methods so that other front ends (and tests) share the rules.
type Admin struct {
	DB *database.Database
	// Networks are the enabled networks (config.NetworkConfig.EnabledNetworks); a
	// number can only be assigned on one of them.
	Networks []string
}

// Commands are the admin commands, for
// bridge.Commands.(*commands.Processor).AddHandlers(admin.Commands()...).
func (a *Admin) Commands() []commands.CommandHandler {
	return []commands.CommandHandler{
		&commands.FullHandler{
			Name:          "assign-number",
			Func:          a.cmdAssign,
			RequiresAdmin: true,
			Help: commands.HelpMeta{
				Section:     commands.HelpSectionAdmin,
				Description: "Let a Matrix user log in with a phone number (when identity.admin_assigned_numbers is on)",
				Args:        "<_network_> <_number_> <_@user:server_>",
			},
		},
		&commands.FullHandler{
			Name:          "unassign-number",
			Func:          a.cmdUnassign,
			RequiresAdmin: true,
			Help: commands.HelpMeta{
				Section:     commands.HelpSectionAdmin,
				Description: "Take a phone number assignment away (existing logins stay until they log out)",
				Args:        "<_network_> <_number_>",
			},
		},
		&commands.FullHandler{
			Name:          "list-numbers",
			Func:          a.cmdList,
			RequiresAdmin: true,
			Help: commands.HelpMeta{
				Section:     commands.HelpSectionAdmin,
				Description: "List the phone numbers assigned to a Matrix user (default: you)",
				Args:        "[_@user:server_]",
			},
		},
	}
}

// UsageError is a mistake in an admin's input; its text is meant for the admin.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usage(format string, args ...any) error { return &UsageError{msg: fmt.Sprintf(format, args...)} }

// TakenError: the number is held by another user, named because only admins see it.
type TakenError struct{ Holder id.UserID }

func (e *TakenError) Error() string {
	return fmt.Sprintf("the number is already assigned to %s; unassign it first", e.Holder)
}

func (e *TakenError) Unwrap() error { return database.ErrNumberTaken }

// ParseNetwork reads a network name and checks that it is enabled.
func (a *Admin) ParseNetwork(input string) (string, error) {
	network, err := ids.ParseNetwork(strings.ToLower(strings.TrimSpace(input)))
	if err != nil {
		return "", usage("unknown network %q (use one of: %s)", input, strings.Join(a.Networks, ", "))
	}
	if !slices.Contains(a.Networks, string(network)) {
		return "", usage("network %s is not enabled on this bridge (enabled: %s)", network, strings.Join(a.Networks, ", "))
	}
	return string(network), nil
}

// ParseNumber reads a phone number as the admin typed it and returns its E.164
// digits, refusing numbers the bridge could never log in with.
func ParseNumber(input string) (string, error) {
	number, err := ids.ParsePhoneNumber(input)
	if err != nil {
		return "", usage("invalid phone number %q: %v", input, err)
	}
	if !ids.IsEEANumber(number) {
		return "", usage("+%s is not a number in the EEA; interop accounts must be", number)
	}
	return number, nil
}

// ParseUser reads a full Matrix user ID.
func ParseUser(input string) (id.UserID, error) {
	mxid := id.UserID(strings.TrimSpace(input))
	if _, _, err := mxid.Parse(); err != nil || !strings.HasPrefix(string(mxid), "@") {
		return "", usage("invalid Matrix user ID %q (expected @user:server)", input)
	}
	return mxid, nil
}

// Assign gives number on network to mxid; by is the admin. A number held by someone
// else is a *TakenError.
func (a *Admin) Assign(ctx context.Context, network, number string, mxid, by id.UserID) error {
	err := a.DB.Assign(ctx, network, number, mxid, by)
	if errors.Is(err, database.ErrNumberTaken) {
		holder, lookupErr := a.DB.AssignedTo(ctx, network, number)
		if lookupErr != nil {
			return lookupErr
		}
		return &TakenError{Holder: holder}
	} else if err != nil {
		return err
	}
	zerolog.Ctx(ctx).Info().
		Str("network", network).
		Stringer("user_mxid", mxid).
		Stringer("admin_mxid", by).
		Msg("Admin assigned a phone number")
	return nil
}

// Unassign takes number on network away from whoever holds it (returned, with whether
// anyone did); by is the admin.
func (a *Admin) Unassign(ctx context.Context, network, number string, by id.UserID) (id.UserID, bool, error) {
	holder, err := a.DB.AssignedTo(ctx, network, number)
	if err != nil {
		return "", false, err
	}
	removed, err := a.DB.Unassign(ctx, network, number)
	if err != nil || !removed {
		return "", false, err
	}
	zerolog.Ctx(ctx).Info().
		Str("network", network).
		Stringer("user_mxid", holder).
		Stringer("admin_mxid", by).
		Msg("Admin unassigned a phone number")
	return holder, true, nil
}

// parseAnyNumber reads a number for unassignment: any syntactically valid number, even
// one the EEA check would refuse today, so that stale rows can always be removed.
func parseAnyNumber(input string) (string, error) {
	number, err := ids.ParsePhoneNumber(input)
	if err != nil {
		return "", usage("invalid phone number %q: %v", input, err)
	}
	return number, nil
}

func (a *Admin) cmdAssign(ce *commands.Event) {
	if len(ce.Args) != 3 {
		ce.Reply("**Usage:** `$cmdprefix assign-number <network> <number> <@user:server>`")
		return
	}
	network, number, mxid, err := a.parseAssign(ce.Args)
	if err == nil {
		err = a.Assign(ce.Ctx, network, number, mxid, ce.User.MXID)
	}
	if err != nil {
		a.replyError(ce, err)
		return
	}
	ce.Reply("Assigned %s on %s to `%s`; they can now log in with it.", ids.FormatPhoneNumber(number), network, mxid)
}

func (a *Admin) parseAssign(args []string) (network, number string, mxid id.UserID, err error) {
	if network, err = a.ParseNetwork(args[0]); err != nil {
		return
	}
	if number, err = ParseNumber(args[1]); err != nil {
		return
	}
	mxid, err = ParseUser(args[2])
	return
}

func (a *Admin) cmdUnassign(ce *commands.Event) {
	if len(ce.Args) != 2 {
		ce.Reply("**Usage:** `$cmdprefix unassign-number <network> <number>`")
		return
	}
	network, err := a.ParseNetwork(ce.Args[0])
	if err != nil {
		a.replyError(ce, err)
		return
	}
	number, err := parseAnyNumber(ce.Args[1])
	if err != nil {
		a.replyError(ce, err)
		return
	}
	holder, removed, err := a.Unassign(ce.Ctx, network, number, ce.User.MXID)
	if err != nil {
		a.replyError(ce, err)
		return
	} else if !removed {
		ce.Reply("%s is not assigned to anyone on %s.", ids.FormatPhoneNumber(number), network)
		return
	}
	ce.Reply("Unassigned %s on %s from `%s`. Their existing login, if any, stays until they log out.",
		ids.FormatPhoneNumber(number), network, holder)
}

func (a *Admin) cmdList(ce *commands.Event) {
	mxid := ce.User.MXID
	if len(ce.Args) > 1 {
		ce.Reply("**Usage:** `$cmdprefix list-numbers [@user:server]`")
		return
	} else if len(ce.Args) == 1 {
		var err error
		if mxid, err = ParseUser(ce.Args[0]); err != nil {
			a.replyError(ce, err)
			return
		}
	}
	numbers, err := a.DB.NumbersOf(ce.Ctx, mxid)
	if err != nil {
		a.replyError(ce, err)
		return
	}
	ce.Reply("%s", FormatAssignments(mxid, numbers))
}

// FormatAssignments is list-numbers' answer.
func FormatAssignments(mxid id.UserID, numbers []database.Assignment) string {
	if len(numbers) == 0 {
		return fmt.Sprintf("No numbers are assigned to `%s`.", mxid)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Numbers assigned to `%s`:\n", mxid)
	for _, n := range numbers {
		fmt.Fprintf(&b, "\n* %s: %s (by `%s`, %s)", n.Network, ids.FormatPhoneNumber(n.Number),
			n.AssignedBy, n.AssignedAt.UTC().Format("2006-01-02 15:04 MST"))
	}
	return b.String()
}

// replyError tells the admin what was wrong with their input, or that the database
// failed without showing its internals.
func (a *Admin) replyError(ce *commands.Event, err error) {
	var ue *UsageError
	var te *TakenError
	switch {
	case errors.As(err, &ue):
		ce.Reply("%s", ue.msg)
	case errors.As(err, &te):
		ce.Reply("That number is already assigned to `%s`. Unassign it first with `%s unassign-number`.",
			te.Holder, ce.Bridge.Config.CommandPrefix)
	default:
		zerolog.Ctx(ce.Ctx).Err(err).Msg("Failed to run a number assignment command")
		ce.Reply("The command failed because of a database error; see the bridge log.")
	}
}
