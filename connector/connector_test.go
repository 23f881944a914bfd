package connector

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

func testSection(integrator int, name string) config.NetworkSection {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	return config.NetworkSection{
		Enabled:        true,
		GatewayURL:     "ws://127.0.0.1:29341/interop/v1",
		IntegratorID:   integrator,
		CallbackSecret: strings.Repeat(name, 32/len(name)+1), // each network its own
		RootPublicKey:  base64.StdEncoding.EncodeToString(key),
		DisplayName:    name,
	}
}

// newTestConnector is a validated connector with WhatsApp (integrator 12) enabled.
func newTestConnector(t *testing.T, change func(c *config.NetworkConfig)) *InteropConnector {
	t.Helper()
	c := &InteropConnector{Config: config.NetworkConfig{
		WhatsApp:            testSection(12, "WhatsApp"),
		Identity:            config.IdentityConfig{AllowUnverifiedNumbers: true},
		DisplaynameTemplate: "{{.Number}} ({{.Network}})",
	}}
	if change != nil {
		change(&c.Config)
	}
	if err := c.ValidateConfig(); err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeVerifier vouches for the numbers in its map and fails with err for the rest.
type fakeVerifier struct {
	method  Verification
	numbers map[string]id.UserID
	err     error
}

func (f *fakeVerifier) Method() Verification { return f.method }

func (f *fakeVerifier) VerifyNumber(_ context.Context, mxid id.UserID, number string) error {
	if owner, ok := f.numbers[number]; ok && owner == mxid {
		return nil
	}
	if f.err != nil {
		return f.err
	}
	return ErrNumberNotVerified
}

func TestGetName(t *testing.T) {
	name := (&InteropConnector{}).GetName()
	if name.NetworkID != "metainterop" || name.DefaultCommandPrefix != "!meta" || name.DefaultPort != 29350 ||
		name.DisplayName != "Meta (WhatsApp & Messenger)" {
		t.Fatalf("got %+v", name)
	}
}

func TestGetConfig(t *testing.T) {
	c := &InteropConnector{}
	example, data, upgrader := c.GetConfig()
	if data != &c.Config || upgrader == nil || !strings.Contains(example, "whatsapp:") || !strings.Contains(example, "messenger:") {
		t.Fatalf("GetConfig gave %T %T and an example without both networks", data, upgrader)
	}
	// Every network ID has a config section and the other way round.
	for _, n := range ids.Networks() {
		if _, ok := c.Config.Section(string(n)); !ok {
			t.Errorf("no config section for network %q", n)
		}
	}
	if len(config.Networks()) != len(ids.Networks()) {
		t.Error("config and ids disagree on the networks")
	}
	meta := c.GetDBMetaTypes().UserLogin()
	if _, ok := meta.(*UserLoginMetadata); !ok {
		t.Fatalf("user login metadata is %T", meta)
	}
}

func TestPrepareLogin(t *testing.T) {
	alice, bob := id.UserID("@alice:example.org"), id.UserID("@bob:example.org")
	tests := []struct {
		name      string
		cfg       func(c *config.NetworkConfig)
		verifiers []NumberVerifier
		user      id.UserID
		input     map[string]string
		wantID    networkid.UserLoginID
		wantHow   Verification
		wantCode  string // ErrCode of the RespError, or "" with wantErr
		wantErr   error
	}{
		{
			name:   "unverified allowed",
			user:   alice,
			input:  map[string]string{"network": "whatsapp", "phone_number": "+49 170 1234567"},
			wantID: "whatsapp:12-491701234567", wantHow: Unverified,
		},
		{
			name: "messenger with its own integrator, 00 prefix, upper case network",
			cfg: func(c *config.NetworkConfig) {
				c.Messenger = testSection(7, "Messenger")
			},
			user:   alice,
			input:  map[string]string{"network": " Messenger ", "phone_number": "0033 6 12 34 56 78"},
			wantID: "messenger:7-33612345678", wantHow: Unverified,
		},
		{
			name:      "verified by admin assignment, not by the fallback",
			cfg:       func(c *config.NetworkConfig) { c.Identity = config.IdentityConfig{AdminAssignedNumbers: true} },
			verifiers: []NumberVerifier{&fakeVerifier{method: VerifiedByAdmin, numbers: map[string]id.UserID{"491701234567": alice}}},
			user:      alice,
			input:     map[string]string{"network": "whatsapp", "phone_number": "+491701234567"},
			wantID:    "whatsapp:12-491701234567", wantHow: VerifiedByAdmin,
		},
		{
			name: "second verifier vouches",
			cfg: func(c *config.NetworkConfig) {
				c.Identity = config.IdentityConfig{SynapseAdminToken: "t", AdminAssignedNumbers: true}
			},
			verifiers: []NumberVerifier{
				&fakeVerifier{method: VerifiedByAdmin},
				&fakeVerifier{method: VerifiedByThreepid, numbers: map[string]id.UserID{"491701234567": alice}},
			},
			user:   alice,
			input:  map[string]string{"network": "whatsapp", "phone_number": "+491701234567"},
			wantID: "whatsapp:12-491701234567", wantHow: VerifiedByThreepid,
		},
		{
			name:      "someone else's number",
			cfg:       func(c *config.NetworkConfig) { c.Identity = config.IdentityConfig{AdminAssignedNumbers: true} },
			verifiers: []NumberVerifier{&fakeVerifier{method: VerifiedByAdmin, numbers: map[string]id.UserID{"491701234567": alice}}},
			user:      bob,
			input:     map[string]string{"network": "whatsapp", "phone_number": "+491701234567"},
			wantCode:  ErrLoginUnverified.ErrCode,
		},
		{
			name:     "no verifier and no fallback",
			cfg:      func(c *config.NetworkConfig) { c.Identity = config.IdentityConfig{SynapseAdminToken: "t"} },
			user:     alice,
			input:    map[string]string{"network": "whatsapp", "phone_number": "+491701234567"},
			wantCode: ErrLoginUnverified.ErrCode,
		},
		{
			name:      "a failing check is no proof, even with the fallback on",
			verifiers: []NumberVerifier{&fakeVerifier{method: VerifiedByThreepid, err: errors.New("synapse unreachable")}},
			user:      alice,
			input:     map[string]string{"network": "whatsapp", "phone_number": "+491701234567"},
			wantErr:   errors.New("synapse unreachable"),
		},
		{
			name:     "disabled network",
			user:     alice,
			input:    map[string]string{"network": "messenger", "phone_number": "+491701234567"},
			wantCode: ErrLoginNetwork.ErrCode,
		},
		{
			name:     "unknown network",
			user:     alice,
			input:    map[string]string{"network": "instagram", "phone_number": "+491701234567"},
			wantCode: ErrLoginNetwork.ErrCode,
		},
		{
			name:     "national number",
			user:     alice,
			input:    map[string]string{"network": "whatsapp", "phone_number": "0170 1234567"},
			wantCode: ErrLoginNumber.ErrCode,
		},
		{
			name:     "outside the EEA",
			user:     alice,
			input:    map[string]string{"network": "whatsapp", "phone_number": "+1 555 123 4567"},
			wantCode: ErrLoginRegion.ErrCode,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestConnector(t, tc.cfg)
			c.Verifiers = tc.verifiers
			data, err := c.prepareLogin(context.Background(), tc.user, tc.input)
			switch {
			case tc.wantCode != "":
				var re bridgev2.RespError
				if !errors.As(err, &re) || re.ErrCode != tc.wantCode {
					t.Fatalf("want %s, got %v", tc.wantCode, err)
				}
				return
			case tc.wantErr != nil:
				if err == nil || !strings.Contains(err.Error(), tc.wantErr.Error()) {
					t.Fatalf("want %v, got %v", tc.wantErr, err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			meta := data.Metadata.(*UserLoginMetadata)
			network, account, err := ids.ParseUserLoginID(data.ID)
			if err != nil || data.ID != tc.wantID || meta.Verification != tc.wantHow ||
				meta.Network != network || meta.InteropJID != account || meta.Number != account.Number() {
				t.Fatalf("got %+v %+v (%v)", data, meta, err)
			}
			if data.RemoteProfile.Phone != "+"+meta.Number || !strings.HasPrefix(data.RemoteName, "+") {
				t.Errorf("remote name %q, phone %q", data.RemoteName, data.RemoteProfile.Phone)
			}
		})
	}
}

func TestLoginStartFields(t *testing.T) {
	c := newTestConnector(t, func(c *config.NetworkConfig) { c.Messenger = testSection(7, "Messenger") })
	step, err := (&PhoneLogin{Main: c}).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if step.Type != bridgev2.LoginStepTypeUserInput || len(step.UserInputParams.Fields) != 2 {
		t.Fatalf("got %+v", step)
	}
	network, number := step.UserInputParams.Fields[0], step.UserInputParams.Fields[1]
	if strings.Join(network.Options, ",") != "whatsapp,messenger" {
		t.Errorf("options %v", network.Options)
	}
	if got, err := network.Validate(" WhatsApp"); err != nil || got != "whatsapp" {
		t.Errorf("network validate: %q, %v", got, err)
	}
	if _, err := network.Validate("signal"); err == nil {
		t.Error("network validate accepted signal")
	}
	if got, err := number.Validate("+49 (170) 123 4567"); err != nil || got != "+491701234567" {
		t.Errorf("number validate: %q, %v", got, err)
	}
	if _, err := number.Validate("0170"); err == nil {
		t.Error("number validate accepted a national number")
	}
}

func TestLoadUserLogin(t *testing.T) {
	c := newTestConnector(t, nil)
	account := jid.Interop(12, "491701234567")
	good := &UserLoginMetadata{Network: ids.WhatsApp, Number: "491701234567", InteropJID: account, Verification: Unverified}
	tests := []struct {
		name string
		id   networkid.UserLoginID
		meta any
		ok   bool
	}{
		{"good", "whatsapp:12-491701234567", good, true},
		{"bad id", "whatsapp:491701234567", good, false},
		{"metadata of another account", "whatsapp:12-491709999999", good, false},
		{"metadata of another network", "messenger:12-491701234567", good, false},
		{"wrong metadata type", "whatsapp:12-491701234567", map[string]any{}, false},
	}
	for _, tc := range tests {
		login := &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: tc.id, Metadata: tc.meta}}
		err := c.LoadUserLogin(context.Background(), login)
		if tc.ok != (err == nil) {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if tc.ok {
			client, isClient := login.Client.(*InteropClient)
			if !isClient || client.Account != account || client.Network != ids.WhatsApp {
				t.Errorf("%s: client %#v", tc.name, login.Client)
			}
		}
	}
}

// The metadata must survive bridgev2's JSON round trip with the JID intact.
func TestUserLoginMetadataJSON(t *testing.T) {
	in := &UserLoginMetadata{Network: ids.Messenger, Number: "33612345678", InteropJID: jid.Interop(7, "33612345678"), Verification: VerifiedByThreepid}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"interop_jid":"7-33612345678@interop"`) {
		t.Errorf("JSON %s", b)
	}
	var out UserLoginMetadata
	if err := json.Unmarshal(b, &out); err != nil || out != *in {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func testClient(t *testing.T) *InteropClient {
	c := newTestConnector(t, func(c *config.NetworkConfig) { c.Messenger = testSection(7, "Messenger") })
	login := &bridgev2.UserLogin{UserLogin: &database.UserLogin{
		ID:       "whatsapp:12-491701234567",
		Metadata: &UserLoginMetadata{Network: ids.WhatsApp, Number: "491701234567", InteropJID: jid.Interop(12, "491701234567")},
	}}
	if err := c.LoadUserLogin(context.Background(), login); err != nil {
		t.Fatal(err)
	}
	return login.Client.(*InteropClient)
}

func TestClientIdentity(t *testing.T) {
	ic := testClient(t)
	if !ic.IsThisUser(context.Background(), "12-491701234567@interop") || ic.IsThisUser(context.Background(), "491701234567@s.whatsapp.net") {
		t.Error("IsThisUser confuses the account with its number on WhatsApp")
	}
	if ic.GetUserID() != "12-491701234567@interop" {
		t.Errorf("GetUserID %q", ic.GetUserID())
	}
	if ic.IsLoggedIn() {
		t.Error("a client without a connection claims to be logged in")
	}
}

func TestGetUserInfo(t *testing.T) {
	ic := testClient(t)
	tests := []struct {
		ghost      networkid.UserID
		name       string
		identifier string
	}{
		{"491709876543@s.whatsapp.net", "+49 170 9876543 (WhatsApp)", "tel:+491709876543"},
		{"1000042@msgr", "1000042 (Messenger)", ""},
		// Another provider's user in a group of this WhatsApp login.
		{"5-33612345678@interop", "+33 6 12 34 56 78 (WhatsApp)", "tel:+33612345678"},
	}
	for _, tc := range tests {
		info, err := ic.GetUserInfo(context.Background(), &bridgev2.Ghost{Ghost: &database.Ghost{ID: tc.ghost}})
		if err != nil {
			t.Fatalf("%s: %v", tc.ghost, err)
		}
		if *info.Name != tc.name || *info.IsBot {
			t.Errorf("%s: name %q", tc.ghost, *info.Name)
		}
		if got := strings.Join(info.Identifiers, ","); got != tc.identifier {
			t.Errorf("%s: identifiers %q", tc.ghost, got)
		}
	}
	if _, err := ic.GetUserInfo(context.Background(), &bridgev2.Ghost{Ghost: &database.Ghost{ID: "x"}}); err == nil {
		t.Error("bad ghost id accepted")
	}
}

func TestGetChatInfo(t *testing.T) {
	ic := testClient(t)
	portal := func(id networkid.PortalID) *bridgev2.Portal {
		return &bridgev2.Portal{Portal: &database.Portal{PortalKey: networkid.PortalKey{ID: id, Receiver: ic.UserLogin.ID}}}
	}
	info, err := ic.GetChatInfo(context.Background(), portal("491709876543@s.whatsapp.net"))
	if err != nil {
		t.Fatal(err)
	}
	if *info.Type != database.RoomTypeDM || info.Members.OtherUserID != "491709876543@s.whatsapp.net" || len(info.Members.MemberMap) != 2 {
		t.Fatalf("got %+v", info)
	}
	if me, ok := info.Members.MemberMap[""]; !ok || !me.IsFromMe || me.SenderLogin != ic.UserLogin.ID || me.Sender != "" {
		t.Errorf("own member %+v", me)
	}
	if _, err := ic.GetChatInfo(context.Background(), portal("1000042@msgr")); err == nil {
		t.Error("a WhatsApp login described a Messenger chat")
	}
	if _, err := ic.GetChatInfo(context.Background(), portal("120363012345678@g.us")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("group without a connection: want ErrNotConnected, got %v", err)
	}
}

func TestHandleMatrixMessageRefuses(t *testing.T) {
	ic := testClient(t)
	resp, err := ic.HandleMatrixMessage(context.Background(), &bridgev2.MatrixMessage{})
	if resp != nil || !errors.Is(err, ErrNotImplemented) {
		t.Fatalf("got %v, %v", resp, err)
	}
	var status bridgev2.MessageStatus
	if !errors.As(err, &status) || !status.SendNotice {
		t.Errorf("refusal does not tell the sender: %#v", err)
	}
}

func TestStartRefusesInvalidConfig(t *testing.T) {
	c := &InteropConnector{}
	if err := c.Start(context.Background()); err == nil || !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("want config.ErrInvalid, got %v", err)
	}
}

func TestStartWarnings(t *testing.T) {
	tests := []struct {
		name     string
		identity config.IdentityConfig
		want     []string
		notWant  []string
	}{
		{"unverified numbers", config.IdentityConfig{AllowUnverifiedNumbers: true},
			[]string{"allow_unverified_numbers is ON"}, []string{"threepid check could not be set up"}},
		// Without Init (no bridge) the configured checks could not be set up.
		{"verifiers missing", config.IdentityConfig{SynapseAdminToken: "syt_secret_token", AdminAssignedNumbers: true},
			[]string{"threepid check could not be set up", "assignment check is missing"}, []string{"allow_unverified_numbers is ON", "syt_secret_token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestConnector(t, func(c *config.NetworkConfig) {
				c.Identity = tc.identity
				c.CallbackBaseURL = "https://bridge.example/meta"
			})
			var buf strings.Builder
			ctx := zerolog.New(&buf).WithContext(context.Background())
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			logs := buf.String()
			for _, w := range append(tc.want, "https://bridge.example/meta", `"integrator_id":12`) {
				if !strings.Contains(logs, w) {
					t.Errorf("start logs lack %q:\n%s", w, logs)
				}
			}
			for _, w := range append(tc.notWant, strings.Repeat("WhatsApp", 5)[:32]) {
				if strings.Contains(logs, w) {
					t.Errorf("start logs contain %q:\n%s", w, logs)
				}
			}
		})
	}
}
