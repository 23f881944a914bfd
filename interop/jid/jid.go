// Package jid parses and formats the addresses of PROTOCOL.md section 1.
//
// It imports nothing from the rest of the project.
package jid

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.mau.fi/libsignal/protocol"
)

// Known servers.
const (
	ServerGateway   = "s.whatsapp.net" // WhatsApp users and the gateway itself
	ServerMessenger = "msgr"
	ServerInterop   = "interop" // third-party (provider) users
	ServerGroup     = "g.us"
)

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid jid")

// JID is one address: a user, one device of a user, a group or a server.
type JID struct {
	User   string
	Device uint16
	Server string
}

// Gateway is the address every iq goes to.
var Gateway = JID{Server: ServerGateway}

// New makes a user JID (device 0).
func New(user, server string) JID {
	return JID{User: user, Server: server}
}

// Interop makes the JID of a third-party user: {integrator}-{user}@interop.
func Interop(integratorID uint16, user string) JID {
	return JID{User: strconv.Itoa(int(integratorID)) + "-" + user, Server: ServerInterop}
}

// Parse reads "user[:device]@server" or a bare server name.
func Parse(s string) (JID, error) {
	at := strings.IndexByte(s, '@')
	if at < 0 {
		if !validServer(s) {
			return JID{}, fmt.Errorf("%w: %q has no user and is not a server", ErrInvalid, s)
		}
		return JID{Server: s}, nil
	}
	userPart, server := s[:at], s[at+1:]
	if !validServer(server) {
		return JID{}, fmt.Errorf("%w: bad server in %q", ErrInvalid, s)
	}
	var j JID
	j.Server = server
	if colon := strings.IndexByte(userPart, ':'); colon >= 0 {
		dev, err := strconv.ParseUint(userPart[colon+1:], 10, 16)
		if err != nil {
			return JID{}, fmt.Errorf("%w: bad device in %q", ErrInvalid, s)
		}
		j.Device = uint16(dev)
		userPart = userPart[:colon]
	}
	if !validUser(userPart) {
		return JID{}, fmt.Errorf("%w: bad user in %q", ErrInvalid, s)
	}
	j.User = userPart
	if j.Server == ServerInterop {
		if err := checkInteropUser(j.User); err != nil {
			return JID{}, err
		}
	}
	return j, nil
}

// MustParse is Parse for constants in tests; it panics on a bad value.
func MustParse(s string) JID {
	j, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return j
}

func validServer(s string) bool {
	switch s {
	case ServerGateway, ServerMessenger, ServerInterop, ServerGroup:
		return true
	}
	return false
}

func validUser(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func checkInteropUser(user string) error {
	integrator, number, ok := strings.Cut(user, "-")
	if !ok || len(integrator) < 1 || len(integrator) > 3 || len(number) < 1 || len(number) > 15 ||
		strings.Contains(number, "-") {
		return fmt.Errorf("%w: interop user %q is not {integrator}-{number}", ErrInvalid, user)
	}
	return nil
}

// String formats the JID; device 0 is left out.
func (j JID) String() string {
	if j.User == "" {
		return j.Server
	}
	if j.Device != 0 {
		return j.User + ":" + strconv.Itoa(int(j.Device)) + "@" + j.Server
	}
	return j.User + "@" + j.Server
}

// IsEmpty is true for the zero JID.
func (j JID) IsEmpty() bool { return j.Server == "" }

// IsGroup is true for group JIDs.
func (j JID) IsGroup() bool { return j.Server == ServerGroup }

// IsInterop is true for third-party users.
func (j JID) IsInterop() bool { return j.Server == ServerInterop }

// ToUser drops the device.
func (j JID) ToUser() JID { return JID{User: j.User, Server: j.Server} }

// WithDevice returns the JID of one device of the user.
func (j JID) WithDevice(device uint16) JID {
	return JID{User: j.User, Device: device, Server: j.Server}
}

// IntegratorID returns the integrator part of an interop user.
func (j JID) IntegratorID() (uint16, bool) {
	if j.Server != ServerInterop {
		return 0, false
	}
	integrator, _, _ := strings.Cut(j.User, "-")
	id, err := strconv.ParseUint(integrator, 10, 16)
	return uint16(id), err == nil
}

// Number returns the E.164 digits of a WhatsApp or interop user (the part after the
// integrator for interop users).
func (j JID) Number() string {
	if j.Server == ServerInterop {
		_, n, _ := strings.Cut(j.User, "-")
		return n
	}
	return j.User
}

// SignalAddress names the device in the Signal stores. The server is part of the
// name so that a Messenger id can never share sessions with an equal phone number.
func (j JID) SignalAddress() *protocol.SignalAddress {
	return protocol.NewSignalAddress(j.User+"@"+j.Server, uint32(j.Device))
}

// SignalName is the name part of SignalAddress, shared by all devices of a user.
func (j JID) SignalName() string { return j.User + "@" + j.Server }

// FromSignalAddress is the inverse of SignalAddress.
func FromSignalAddress(addr *protocol.SignalAddress) (JID, error) {
	j, err := Parse(addr.Name())
	if err != nil {
		return JID{}, err
	}
	j.Device = uint16(addr.DeviceID())
	return j, nil
}

// MarshalText lets JIDs be used in JSON and as map keys in encoders.
func (j JID) MarshalText() ([]byte, error) { return []byte(j.String()), nil }

// UnmarshalText parses a JID.
func (j *JID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*j = JID{}
		return nil
	}
	parsed, err := Parse(string(b))
	if err != nil {
		return err
	}
	*j = parsed
	return nil
}

// Compare orders JIDs by their string form (the order phash and stable listings use).
func Compare(a, b JID) int {
	return strings.Compare(a.String(), b.String())
}

// Sort orders JIDs by their string form, in place.
func Sort(js []JID) {
	slices.SortFunc(js, Compare)
}
