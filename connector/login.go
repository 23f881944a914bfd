package connector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/verify"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

const (
	LoginFlowIDPhoneNumber = "phone-number"

	LoginStepIDNumber   = "io.github.matrix-meta-interop.login.number"
	LoginStepIDComplete = "io.github.matrix-meta-interop.login.complete"

	loginFieldNetwork = "network"
	loginFieldNumber  = "phone_number"
)

// ErrNetworkDisabled is wrapped when a login names a network the config does not enable.
var ErrNetworkDisabled = errors.New("network is not enabled on this bridge")

// Login errors shown to the user: each says what to do next.
var (
	ErrLoginNetwork = bridgev2.RespError{
		ErrCode:    "IO.GITHUB.MATRIX_META_INTEROP.UNKNOWN_NETWORK",
		Err:        "That network is not available on this bridge.",
		StatusCode: http.StatusBadRequest,
	}
	ErrLoginNumber = bridgev2.RespError{
		ErrCode:    "IO.GITHUB.MATRIX_META_INTEROP.BAD_NUMBER",
		Err:        "That is not a phone number in international format",
		StatusCode: http.StatusBadRequest,
	}
	ErrLoginRegion = bridgev2.RespError{
		ErrCode:    "IO.GITHUB.MATRIX_META_INTEROP.REGION",
		Err:        "Meta only allows numbers from EEA countries (the EU, Iceland, Liechtenstein and Norway) for third-party chats.",
		StatusCode: http.StatusForbidden,
	}
	ErrLoginNumberTaken = bridgev2.RespError{
		ErrCode:    "IO.GITHUB.MATRIX_META_INTEROP.NUMBER_TAKEN",
		Err:        "This number is already logged in by another Matrix account on this bridge.",
		StatusCode: http.StatusConflict,
	}
	ErrLoginUnverified = bridgev2.RespError{
		ErrCode:    "IO.GITHUB.MATRIX_META_INTEROP.NUMBER_NOT_VERIFIED",
		Err:        "This bridge could not confirm that the number belongs to your Matrix account. Add it as a verified phone number on your homeserver account, or ask a bridge admin to assign it to you.",
		StatusCode: http.StatusForbidden,
	}
)

// GetLoginFlows offers the one flow: claim a phone number on one network.
func (c *InteropConnector) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{
		Name:        "Phone number",
		Description: "Chat with WhatsApp or Messenger users as your phone number, through Meta's third-party chats",
		ID:          LoginFlowIDPhoneNumber,
	}}
}

// CreateLogin starts a login; the work happens in Start and SubmitUserInput.
func (c *InteropConnector) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	if flowID != LoginFlowIDPhoneNumber {
		return nil, fmt.Errorf("unknown login flow %q", flowID)
	}
	return &PhoneLogin{
		Main: c,
		User: user,
		Log:  user.Log.With().Str("action", "login").Str("flow", flowID).Logger(),
	}, nil
}

// PhoneLogin asks for a network and a number and, when the number is proven to be the
// user's, creates the login.
type PhoneLogin struct {
	Main *InteropConnector
	User *bridgev2.User
	Log  zerolog.Logger
}

var (
	_ bridgev2.LoginProcessUserInput = (*PhoneLogin)(nil)
)

// Start asks for the network and the number in one step.
func (pl *PhoneLogin) Start(ctx context.Context) (*bridgev2.LoginStep, error) {
	networks := pl.Main.Config.EnabledNetworks()
	if len(networks) == 0 {
		return nil, ErrLoginNetwork
	}
	var names []string
	for _, n := range networks {
		s, _ := pl.Main.Config.Section(n)
		names = append(names, fmt.Sprintf("%s (%s)", n, s.DisplayName))
	}
	return &bridgev2.LoginStep{
		Type:   bridgev2.LoginStepTypeUserInput,
		StepID: LoginStepIDNumber,
		Instructions: "Enter the network and your phone number in international format. " +
			"WhatsApp or Messenger users who turned on third-party chats can then reach you at this number.",
		UserInputParams: &bridgev2.LoginUserInputParams{
			Fields: []bridgev2.LoginInputDataField{{
				Type:         bridgev2.LoginInputFieldTypeSelect,
				ID:           loginFieldNetwork,
				Name:         "Network",
				Description:  "One of: " + strings.Join(names, ", "),
				DefaultValue: networks[0],
				Options:      networks,
				Validate:     validateNetworkInput(networks),
			}, {
				Type:        bridgev2.LoginInputFieldTypePhoneNumber,
				ID:          loginFieldNumber,
				Name:        "Phone number",
				Description: "In international format, e.g. +49 170 1234567",
				Validate:    validateNumberInput,
			}},
		},
	}, nil
}

// validateNetworkInput lets the command and provisioning layers refuse a wrong network
// before the step is submitted.
func validateNetworkInput(enabled []string) func(string) (string, error) {
	return func(s string) (string, error) {
		s = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(enabled, s) {
			return "", fmt.Errorf("network must be one of %s", strings.Join(enabled, ", "))
		}
		return s, nil
	}
}

// validateNumberInput normalises the number to "+{digits}" early, with a clear error.
func validateNumberInput(s string) (string, error) {
	number, err := ids.ParsePhoneNumber(s)
	if err != nil {
		return "", err
	}
	return "+" + number, nil
}

// Cancel has nothing to clean up: nothing happens before the input arrives.
func (pl *PhoneLogin) Cancel() {}

// SubmitUserInput checks the input, proves the number and creates the login.
func (pl *PhoneLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	if err := pl.Main.waitStarted(ctx); err != nil {
		return nil, err
	}
	data, err := pl.Main.prepareLogin(ctx, pl.User.MXID, input)
	if err != nil {
		return nil, err
	}
	// bridgev2 would refuse too, but its message names the other Matrix user.
	existing, err := pl.Main.Bridge.GetExistingUserLoginByID(ctx, data.ID)
	if err != nil {
		return nil, fmt.Errorf("failed to check for an existing login: %w", err)
	} else if existing != nil && existing.UserMXID != pl.User.MXID {
		return nil, ErrLoginNumberTaken
	}
	// The account's Signal identity exists before the login does, so a login never
	// connects without keys to upload; a returning owner keeps theirs.
	meta := data.Metadata.(*UserLoginMetadata)
	if _, err = pl.Main.signalAccount(ctx, meta.InteropJID); err != nil {
		return nil, err
	}
	// A user logging in again with their own number reuses their login.
	login, err := pl.User.NewLogin(ctx, data, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to save login: %w", err)
	}
	pl.Log.Info().Str("login_id", string(login.ID)).Msg("Created login")
	// Connect only starts the run loop; the login step does not wait for the gateway.
	login.Client.Connect(login.Log.WithContext(pl.Main.Bridge.BackgroundCtx))
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeComplete,
		StepID:       LoginStepIDComplete,
		Instructions: fmt.Sprintf("Logged in as %s on %s", login.RemoteName, networkDisplayName(pl.Main, meta.Network)),
		CompleteParams: &bridgev2.LoginCompleteParams{
			UserLoginID: login.ID,
			UserLogin:   login,
		},
	}, nil
}

// prepareLogin turns the user's input into the login row, or says plainly why not.
// It is separate from SubmitUserInput so that it can be tested without a bridge.
func (c *InteropConnector) prepareLogin(ctx context.Context, mxid id.UserID, input map[string]string) (*database.UserLogin, error) {
	network, err := ids.ParseNetwork(strings.ToLower(strings.TrimSpace(input[loginFieldNetwork])))
	if err != nil {
		return nil, ErrLoginNetwork
	}
	section, err := c.section(network)
	if err != nil {
		return nil, ErrLoginNetwork
	}
	number, err := ids.ParsePhoneNumber(input[loginFieldNumber])
	if err != nil {
		return nil, ErrLoginNumber.AppendMessage(": %v", err)
	}
	if !ids.IsEEANumber(number) {
		return nil, ErrLoginRegion
	}
	// Assignments are per network; the verifiers read it from the context.
	verification, err := c.verifyNumber(verify.WithNetwork(ctx, string(network)), mxid, number)
	if errors.Is(err, ErrNumberNotVerified) {
		return nil, ErrLoginUnverified
	} else if err != nil {
		return nil, fmt.Errorf("failed to verify the phone number: %w", err)
	}
	account := jid.Interop(uint16(section.IntegratorID), number)
	return &database.UserLogin{
		ID:         ids.MakeUserLoginID(network, account),
		RemoteName: ids.FormatPhoneNumber(number),
		RemoteProfile: status.RemoteProfile{
			Phone: "+" + number,
		},
		Metadata: &UserLoginMetadata{
			Network:      network,
			Number:       number,
			InteropJID:   account,
			Verification: verification,
		},
	}, nil
}

func networkDisplayName(c *InteropConnector, network ids.Network) string {
	if s, ok := c.Config.Section(string(network)); ok && s.DisplayName != "" {
		return s.DisplayName
	}
	return string(network)
}
