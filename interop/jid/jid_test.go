package jid

import (
	"errors"
	"testing"
)

func TestParseRoundTrip(t *testing.T) {
	for _, s := range []string{
		"491701234567@s.whatsapp.net",
		"491701234567:3@s.whatsapp.net",
		"1000042@msgr",
		"1000042:2@msgr",
		"12-491701234567@interop",
		"491701234567-1700000000@g.us",
		"s.whatsapp.net",
		"g.us",
	} {
		j, err := Parse(s)
		if err != nil {
			t.Errorf("Parse(%q): %v", s, err)
			continue
		}
		if j.String() != s {
			t.Errorf("Parse(%q).String() = %q", s, j.String())
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{
		"", "@", "abc@s.whatsapp.net", "49170@example.com", "491701234567:x@s.whatsapp.net",
		"491701234567:70000@s.whatsapp.net", "1234-49170@interop", "12-@interop",
		"12-1234567890123456@interop", "49170@interop", "<x>@msgr",
	} {
		if _, err := Parse(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestSignalAddressRoundTrip(t *testing.T) {
	for _, s := range []string{"491701234567:3@s.whatsapp.net", "1000042@msgr", "7-33612345678@interop"} {
		j := MustParse(s)
		back, err := FromSignalAddress(j.SignalAddress())
		if err != nil || back != j {
			t.Errorf("%s -> %v -> %v (%v)", s, j.SignalAddress(), back, err)
		}
	}
	if MustParse("1000042@msgr").SignalName() == MustParse("1000042@s.whatsapp.net").SignalName() {
		t.Error("a Messenger id and an equal phone number share a Signal name")
	}
}

func TestInteropParts(t *testing.T) {
	j := Interop(7, "33612345678")
	if j.String() != "7-33612345678@interop" {
		t.Fatalf("Interop() = %s", j)
	}
	if id, ok := j.IntegratorID(); !ok || id != 7 {
		t.Errorf("IntegratorID() = %d, %v", id, ok)
	}
	if j.Number() != "33612345678" {
		t.Errorf("Number() = %s", j.Number())
	}
}
