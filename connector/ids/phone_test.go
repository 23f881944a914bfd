package ids_test

import (
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
)

func TestFormatPhoneNumber(t *testing.T) {
	tests := []struct{ in, want string }{
		{"491701234567", "+49 170 1234567"},
		{"4915112345678", "+49 151 12345678"},
		{"33612345678", "+33 6 12 34 56 78"},
		{"31612345678", "+31 6 12345678"},
		{"436641234567", "+43 664 1234567"},
		{"4512345678", "+45 12 34 56 78"},
		{"46701234567", "+46 70 123 45 67"},
		{"4741234567", "+47 412 34 567"},
		{"48512345678", "+48 512 345 678"},
		{"351912345678", "+351 912 345 678"},
		{"3546112345", "+354 611 2345"},
		{"35679123456", "+356 7912 3456"},
		{"358401234567", "+358 40 1234567"},
		{"262692123456", "+262 692 12 34 56"},
		{"4233", "+423 3"},              // shorter than the groups: no empty groups
		{"49", "+49"},                   // code only
		{"15551234567", "+15551234567"}, // outside the EEA table
		{"447911123456", "+447911123456"},
		{"", ""},
		{"+491701234567", "+491701234567"}, // not digits: unchanged
		{"1234567890123456", "1234567890123456"},
	}
	for _, tc := range tests {
		if got := ids.FormatPhoneNumber(tc.in); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIsEEANumber(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"491701234567", true},
		{"3546112345", true},
		{"5906901234567", true},
		{"15551234567", false},
		{"447911123456", false}, // the UK left the EU
		{"41791234567", false},  // Switzerland is not in the EEA
		{"3801234567", false},   // Ukraine
		{"", false},
	}
	for _, tc := range tests {
		if got := ids.IsEEANumber(tc.in); got != tc.want {
			t.Errorf("%q: got %v", tc.in, got)
		}
	}
}

func TestParsePhoneNumber(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"+49 170 1234567", "491701234567", true},
		{"  +49 (170) 123-45-67 ", "491701234567", true},
		{"0049.170/1234567", "491701234567", true},
		{"+49\u00a0170\u00a01234567", "491701234567", true},
		{"+123456789012345", "123456789012345", true},
		{"01701234567", "", false},  // national format
		{"491701234567", "", false}, // no + or 00
		{"+49 170 CALL-ME", "", false},
		{"+0491701234567", "", false},
		{"+4917012", "", false}, // 7 digits
		{"+1234567890123456", "", false},
		{"+", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, err := ids.ParsePhoneNumber(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("%q: got %q, %v", tc.in, got, err)
		}
	}
}
