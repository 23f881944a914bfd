package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Limits from PROTOCOL.md sections 1 and 2.
const (
	MinIntegratorID      = 1
	MaxIntegratorID      = 999
	MinCallbackSecretLen = 32
	GatewayPath          = "/interop/v1"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid network config")

// ValidationError lists every problem found, each starting with its key path.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return ErrInvalid.Error() + ": " + strings.Join(e.Problems, "; ")
}

func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Validate checks the whole network section and prepares what the connector needs (the
// root keys, read from their files, and the parsed name template). It reports every
// problem at once, each prefixed with its key path, so an admin fixes them in one go.
func (c *NetworkConfig) Validate() error {
	var problems []string
	add := func(path, format string, args ...any) {
		problems = append(problems, "network."+path+": "+fmt.Sprintf(format, args...))
	}
	enabled := c.EnabledNetworks()
	if len(enabled) == 0 {
		add("whatsapp.enabled", "no network is enabled; enable the whatsapp or messenger section you have an agreement for")
	}
	for _, name := range enabled {
		s, _ := c.Section(name)
		s.validate(name, add)
	}
	// Meta's callbacks are told apart by the secret that signs them, so with both
	// networks on, one secret must not verify the other network's requests.
	if c.WhatsApp.Enabled && c.Messenger.Enabled && c.WhatsApp.CallbackSecret != "" &&
		c.WhatsApp.CallbackSecret == c.Messenger.CallbackSecret {
		add("messenger.callback_secret", "must differ from whatsapp.callback_secret: the bridge tells the networks' callbacks apart by the secret that signs them")
	}
	if c.CallbackBaseURL != "" {
		if err := checkCallbackBaseURL(c.CallbackBaseURL); err != nil {
			add("callback_base_url", "%v", err)
		} else {
			c.CallbackBaseURL = strings.TrimRight(c.CallbackBaseURL, "/")
		}
	}
	id := c.Identity
	if len(enabled) > 0 && !id.AllowUnverifiedNumbers && id.SynapseAdminToken == "" && !id.AdminAssignedNumbers {
		add("identity", "no way to verify phone numbers: set identity.synapse_admin_token, "+
			"enable identity.admin_assigned_numbers, or (for tests only) identity.allow_unverified_numbers")
	}
	if tpl, err := parseDisplaynameTemplate(c.DisplaynameTemplate); err != nil {
		add("displayname_template", "%v", err)
	} else {
		c.displaynameTemplate = tpl
		// A template can parse but fail on execution (e.g. an unknown field).
		if _, err = c.FormatDisplayname(DisplaynameParams{Number: "+49 170 1234567", Name: "Name", Network: "WhatsApp"}); err != nil {
			c.displaynameTemplate = nil
			add("displayname_template", "%v", err)
		}
	}
	if c.Metrics.Enabled {
		if err := checkListen(c.Metrics.Listen); err != nil {
			add("metrics.listen", "%v", err)
		}
	}
	if c.Media.StorePath != "" && strings.TrimSpace(c.Media.StorePath) == "" {
		add("media.store_path", "is blank; leave it out for %s or name a folder", DefaultMediaStorePath)
	}
	if c.Media.RetentionDays < 0 {
		add("media.retention_days", "must be at least 1, got %d", c.Media.RetentionDays)
	}
	for _, kind := range MediaKinds() {
		if mib := c.Media.MaxMiB(kind); mib < 1 || mib > MaxMediaMiB {
			add("media.max_size_mib."+kind, "must be 1-%d (Meta's proxy fetches at most %d MiB), got %d", MaxMediaMiB, MaxMediaMiB, mib)
		}
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

func (s *NetworkSection) validate(name string, add func(path, format string, args ...any)) {
	if err := checkGatewayURL(s.GatewayURL); err != nil {
		add(name+".gateway_url", "%v", err)
	}
	if s.IntegratorID < MinIntegratorID || s.IntegratorID > MaxIntegratorID {
		add(name+".integrator_id", "must be %d-%d (from your agreement with Meta), got %d", MinIntegratorID, MaxIntegratorID, s.IntegratorID)
	}
	// Never print the secret itself, only what is wrong with it.
	if len(s.CallbackSecret) < MinCallbackSecretLen {
		add(name+".callback_secret", "must be at least %d bytes, got %d", MinCallbackSecretLen, len(s.CallbackSecret))
	}
	key, err := s.loadRootKey()
	if err != nil {
		add(name+".root_public_key", "%v", err)
	}
	s.rootKey = key
	if s.DisplayName == "" {
		s.DisplayName = defaultDisplayName(name)
	}
}

func defaultDisplayName(network string) string {
	switch network {
	case NetworkWhatsApp:
		return "WhatsApp"
	case NetworkMessenger:
		return "Messenger"
	}
	return network
}

func checkGatewayURL(raw string) error {
	if raw == "" {
		return errors.New("is empty; set the wss://…" + GatewayPath + " URL Meta gave you")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("is not a URL: %w", err)
	}
	switch {
	case u.Scheme != "ws" && u.Scheme != "wss":
		return fmt.Errorf("must be a ws:// or wss:// URL, got scheme %q", u.Scheme)
	case u.Host == "":
		return errors.New("has no host")
	case u.Path != GatewayPath && !strings.HasSuffix(u.Path, GatewayPath):
		return fmt.Errorf("must end in %s, got path %q", GatewayPath, u.Path)
	case u.User != nil:
		return errors.New("must not contain credentials")
	}
	return nil
}

func checkCallbackBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("is not a URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("must be an http:// or https:// URL, got scheme %q", u.Scheme)
	case u.Host == "":
		return errors.New("has no host")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("must not have a query or fragment")
	}
	return nil
}

// loadRootKey decodes the key from the config or its file; exactly one must be set.
func (s *NetworkSection) loadRootKey() (ed25519.PublicKey, error) {
	text, source := s.RootPublicKey, "root_public_key"
	switch {
	case s.RootPublicKey != "" && s.RootPublicKeyFile != "":
		return nil, errors.New("set either root_public_key or root_public_key_file, not both")
	case s.RootPublicKeyFile != "":
		data, err := os.ReadFile(s.RootPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("failed to read root_public_key_file: %w", err)
		}
		text, source = string(data), "root_public_key_file "+s.RootPublicKeyFile
	case s.RootPublicKey == "":
		return nil, errors.New("is empty; set root_public_key (base64) or root_public_key_file")
	}
	key, err := DecodeRootKey(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return key, nil
}

// DecodeRootKey reads a base64 Ed25519 public key, padded or not, ignoring
// surrounding whitespace (key files end in a newline).
func DecodeRootKey(text string) (ed25519.PublicKey, error) {
	text = strings.TrimSpace(text)
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		var rawErr error
		if b, rawErr = base64.RawStdEncoding.DecodeString(text); rawErr != nil {
			return nil, fmt.Errorf("is not base64: %w", err)
		}
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("must be %d bytes, got %d", ed25519.PublicKeySize, len(b))
	}
	return ed25519.PublicKey(b), nil
}

// checkListen accepts host:port with a numeric port, as net.Listen takes it (an empty
// host, ":8001", listens on every interface).
func checkListen(addr string) error {
	if addr == "" {
		return errors.New("must be set (host:port) when metrics are enabled")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port: %w", err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	return nil
}
