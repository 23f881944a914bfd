package ids_test

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

func TestUserLoginID(t *testing.T) {
	account := jid.Interop(12, "491701234567")
	id := ids.MakeUserLoginID(ids.WhatsApp, account)
	if id != "whatsapp:12-491701234567" {
		t.Fatalf("got %q", id)
	}
	tests := []struct {
		in      networkid.UserLoginID
		network ids.Network
		account string
		ok      bool
	}{
		{"whatsapp:12-491701234567", ids.WhatsApp, "12-491701234567@interop", true},
		{"messenger:999-4312345678", ids.Messenger, "999-4312345678@interop", true},
		{"messenger:1-123456789012345", ids.Messenger, "1-123456789012345@interop", true},
		{"whatsapp", "", "", false},
		{"telegram:12-491701234567", "", "", false},
		{"WhatsApp:12-491701234567", "", "", false},
		{"whatsapp:491701234567", "", "", false},      // no integrator
		{"whatsapp:1234-491701234567", "", "", false}, // integrator too long
		{"whatsapp:012-491701234567", "", "", false},  // leading zero would be a second ID
		{"whatsapp:12-1234567890123456", "", "", false},
		{"whatsapp:12-491701234567:0", "", "", false},
		{"whatsapp:12-491701234567:1", "", "", false},
		{"whatsapp:12-49170123456a", "", "", false},
		{"whatsapp:12-491701234567@interop", "", "", false},
		{"whatsapp:", "", "", false},
	}
	for _, tc := range tests {
		network, got, err := ids.ParseUserLoginID(tc.in)
		if !tc.ok {
			if err == nil || !errors.Is(err, ids.ErrInvalidID) {
				t.Errorf("%q: want ErrInvalidID, got %v (%v %v)", tc.in, err, network, got)
			}
			continue
		}
		if err != nil || network != tc.network || got.String() != tc.account {
			t.Errorf("%q: got %v %v %v", tc.in, network, got, err)
		}
		if back := ids.MakeUserLoginID(network, got); back != tc.in {
			t.Errorf("%q: round trip gave %q", tc.in, back)
		}
	}
}

func TestUserID(t *testing.T) {
	if got := ids.MakeUserID(jid.MustParse("491701234567:3@s.whatsapp.net")); got != "491701234567@s.whatsapp.net" {
		t.Fatalf("device not dropped: %q", got)
	}
	tests := []struct {
		in      networkid.UserID
		ok      bool
		network ids.Network // "" for users of no single network
	}{
		{"491701234567@s.whatsapp.net", true, ids.WhatsApp},
		{"1000042@msgr", true, ids.Messenger},
		{"5-4915112345678@interop", true, ""},
		{"491701234567:1@s.whatsapp.net", false, ""},
		{"491701234567:0@s.whatsapp.net", false, ""},
		{"123-456@g.us", false, ""},
		{"s.whatsapp.net", false, ""},
		{"491701234567@example.com", false, ""},
		{"abc@s.whatsapp.net", false, ""},
		{"", false, ""},
	}
	for _, tc := range tests {
		got, err := ids.ParseUserID(tc.in)
		if !tc.ok {
			if !errors.Is(err, ids.ErrInvalidID) {
				t.Errorf("%q: want ErrInvalidID, got %v", tc.in, err)
			}
			continue
		}
		if err != nil || ids.MakeUserID(got) != tc.in {
			t.Errorf("%q: got %v, %v", tc.in, got, err)
		}
		network, ok := ids.NetworkOfUser(got)
		if network != tc.network || ok != (tc.network != "") {
			t.Errorf("%q: network %q %v, want %q", tc.in, network, ok, tc.network)
		}
	}
}

func TestPortalIDAndKey(t *testing.T) {
	login := networkid.UserLoginID("whatsapp:12-491701234567")
	tests := []struct {
		chat     string
		receiver networkid.UserLoginID
	}{
		{"491709876543@s.whatsapp.net", login},
		{"1000042@msgr", login},
		{"491709876543-1732550000@g.us", ""},
		{"120363012345678@g.us", ""},
	}
	for _, tc := range tests {
		chat := jid.MustParse(tc.chat)
		key := ids.MakePortalKey(chat, login)
		if string(key.ID) != tc.chat || key.Receiver != tc.receiver {
			t.Errorf("%s: got key %+v", tc.chat, key)
		}
		back, err := ids.ParsePortalID(key.ID)
		if err != nil || back != chat {
			t.Errorf("%s: parsed back %v, %v", tc.chat, back, err)
		}
	}
	for _, bad := range []networkid.PortalID{"", "g.us", "491709876543:2@s.whatsapp.net", "x@g.us", "1@elsewhere"} {
		if _, err := ids.ParsePortalID(bad); !errors.Is(err, ids.ErrInvalidID) {
			t.Errorf("%q: want ErrInvalidID, got %v", bad, err)
		}
	}
}

func TestMessageID(t *testing.T) {
	chat := jid.MustParse("120363012345678@g.us")
	sender := jid.MustParse("491709876543:2@s.whatsapp.net")
	id := ids.MakeMessageID(chat, sender, "3EB0:ABC")
	if id != "120363012345678@g.us:491709876543@s.whatsapp.net:3EB0:ABC" {
		t.Fatalf("got %q", id)
	}
	key, err := ids.ParseMessageID(id)
	want := ids.MessageKey{Chat: chat, Sender: sender.ToUser(), StanzaID: "3EB0:ABC"}
	if err != nil || key != want {
		t.Fatalf("got %+v, %v", key, err)
	}
	if key.ID() != id {
		t.Fatalf("round trip gave %q", key.ID())
	}
	for _, bad := range []networkid.MessageID{
		"",
		"120363012345678@g.us:491709876543@s.whatsapp.net",
		"120363012345678@g.us:491709876543@s.whatsapp.net:",
		"nonsense:491709876543@s.whatsapp.net:ABC",
		"120363012345678@g.us:123@g.us:ABC",
	} {
		if _, err := ids.ParseMessageID(bad); !errors.Is(err, ids.ErrInvalidID) {
			t.Errorf("%q: want ErrInvalidID, got %v", bad, err)
		}
	}
	// Our own messages in a 1:1 chat: the sender is the interop account.
	own := ids.MakeMessageID(jid.MustParse("491709876543@s.whatsapp.net"), jid.Interop(12, "491701234567"), "ID1")
	if key, err := ids.ParseMessageID(own); err != nil || key.Sender != jid.Interop(12, "491701234567") {
		t.Fatalf("own message: %+v, %v", key, err)
	}
}

func TestParseNetwork(t *testing.T) {
	for _, n := range ids.Networks() {
		got, err := ids.ParseNetwork(string(n))
		if err != nil || got != n || n.Server() == "" {
			t.Errorf("%q: got %q, %v, server %q", n, got, err, n.Server())
		}
	}
	if _, err := ids.ParseNetwork("instagram"); !errors.Is(err, ids.ErrInvalidID) {
		t.Errorf("want ErrInvalidID, got %v", err)
	}
	if ids.WhatsApp.Server() != jid.ServerGateway || ids.Messenger.Server() != jid.ServerMessenger {
		t.Error("wrong servers")
	}
}
