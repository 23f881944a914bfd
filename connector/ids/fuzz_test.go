package ids_test

import (
	"testing"

	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
)

// Every parser accepts only canonical IDs: whatever it accepts, formatting the result
// gives back exactly the input, so no network object ever has two IDs.
func FuzzParseIDs(f *testing.F) {
	for _, s := range []string{
		"whatsapp:12-491701234567", "messenger:7-33612345678", "491701234567@s.whatsapp.net",
		"1000042@msgr", "5-4915112345678@interop", "120363012345678@g.us",
		"120363012345678@g.us:491709876543@s.whatsapp.net:3EB0:ABC", "491701234567:1@s.whatsapp.net",
		"whatsapp:012-4917", "@", ":", "::", "g.us",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if network, account, err := ids.ParseUserLoginID(networkid.UserLoginID(s)); err == nil {
			if got := ids.MakeUserLoginID(network, account); string(got) != s {
				t.Errorf("login id %q came back as %q", s, got)
			}
		}
		if user, err := ids.ParseUserID(networkid.UserID(s)); err == nil {
			if got := ids.MakeUserID(user); string(got) != s {
				t.Errorf("user id %q came back as %q", s, got)
			}
		}
		if chat, err := ids.ParsePortalID(networkid.PortalID(s)); err == nil {
			if got := ids.MakePortalID(chat); string(got) != s {
				t.Errorf("portal id %q came back as %q", s, got)
			}
		}
		if key, err := ids.ParseMessageID(networkid.MessageID(s)); err == nil {
			if got := key.ID(); string(got) != s {
				t.Errorf("message id %q came back as %q", s, got)
			}
		}
	})
}

// A number read from what a person typed survives being shown and typed again.
func FuzzPhoneNumber(f *testing.F) {
	for _, s := range []string{"+49 170 1234567", "0033612345678", "+1 (555) 123-4567", "+", "00", "+3546112345"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		digits, err := ids.ParsePhoneNumber(s)
		if err != nil {
			return
		}
		shown := ids.FormatPhoneNumber(digits)
		again, err := ids.ParsePhoneNumber(shown)
		if err != nil || again != digits {
			t.Errorf("%q → %q → %q shown as %q: %v", s, digits, again, shown, err)
		}
		_ = ids.IsEEANumber(digits)
	})
}
