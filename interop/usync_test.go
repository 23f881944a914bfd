package interop

import (
	"reflect"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

func TestDevicesQuery(t *testing.T) {
	alice := jid.MustParse("491701234567@s.whatsapp.net")
	bob := jid.MustParse("100200300@msgr")
	iq, err := buildDevicesQuery([]jid.JID{alice.WithDevice(2), bob})
	if err != nil {
		t.Fatal(err)
	}
	want := `<iq to="s.whatsapp.net" type="get" xmlns="usync"><usync context="message" mode="query">` +
		`<query><devices version="2"/></query><list><user jid="491701234567@s.whatsapp.net"/>` +
		`<user jid="100200300@msgr"/></list></usync></iq>`
	if got := mustMarshal(t, iq); got != want {
		t.Fatalf("devices query encodes as\n%s\nwant\n%s", got, want)
	}
	if _, err := buildDevicesQuery([]jid.JID{jid.MustParse("1-2@g.us")}); err == nil {
		t.Fatal("device list of a group accepted")
	}

	answer := `<iq type="result"><usync><list>` +
		`<user jid="491701234567@s.whatsapp.net"><devices><device-list><device id="0"/><device id="3"/></device-list></devices></user>` +
		`<user jid="100200300@msgr"><devices><error code="404"/></devices></user>` +
		`</list></usync></iq>`
	got, err := parseDevicesAnswer(mustUnmarshal(t, answer), []jid.JID{alice, bob})
	if err != nil {
		t.Fatal(err)
	}
	if wantMap := map[jid.JID][]uint16{alice: {0, 3}}; !reflect.DeepEqual(got, wantMap) {
		t.Fatalf("got %v, want %v", got, wantMap)
	}

	malformed := map[string]string{
		"no usync":  `<iq type="result"/>`,
		"no list":   `<iq type="result"><usync/></iq>`,
		"bad id":    `<iq type="result"><usync><list><user jid="491701234567@s.whatsapp.net"><devices><device-list><device id="x"/></device-list></devices></user></list></usync></iq>`,
		"id range":  `<iq type="result"><usync><list><user jid="491701234567@s.whatsapp.net"><devices><device-list><device id="70000"/></device-list></devices></user></list></usync></iq>`,
		"not asked": `<iq type="result"><usync><list><user jid="4999@s.whatsapp.net"/></list></usync></iq>`,
		"device":    `<iq type="result"><usync><list><user jid="491701234567:1@s.whatsapp.net"/></list></usync></iq>`,
		"bad jid":   `<iq type="result"><usync><list><user jid="@@"/></list></usync></iq>`,
	}
	for name, a := range malformed {
		if _, err := parseDevicesAnswer(mustUnmarshal(t, a), []jid.JID{alice, bob}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestContactLookup(t *testing.T) {
	iq, numbers, err := buildContactQuery([]string{"+491701234567", "491709999999", "441234"})
	if err != nil {
		t.Fatal(err)
	}
	want := `<iq to="s.whatsapp.net" type="get" xmlns="usync"><usync context="interactive" mode="query">` +
		`<query><contact/></query><list>` +
		`<user><contact>+491701234567</contact></user><user><contact>+491709999999</contact></user>` +
		`<user><contact>+441234</contact></user></list></usync></iq>`
	if got := mustMarshal(t, iq); got != want {
		t.Fatalf("contact query encodes as\n%s\nwant\n%s", got, want)
	}
	for _, bad := range []string{"", "+", "49 170", "0049170", "1234567890123456", "+49a"} {
		if _, _, err := buildContactQuery([]string{bad}); err == nil {
			t.Errorf("number %q accepted", bad)
		}
	}

	answer := `<iq type="result"><usync><list>` +
		`<user jid="491709999999@s.whatsapp.net"><contact type="out"/></user>` +
		`<user jid="491701234567@s.whatsapp.net"><contact type="in"/></user>` +
		`</list></usync></iq>`
	got, err := parseContactAnswer(mustUnmarshal(t, answer), numbers)
	if err != nil {
		t.Fatal(err)
	}
	wantInfo := []ContactInfo{
		{Number: "+491701234567", In: true, JID: jid.MustParse("491701234567@s.whatsapp.net")},
		{Number: "+491709999999"},
		{Number: "+441234"}, // not in the answer: out
	}
	if !reflect.DeepEqual(got, wantInfo) {
		t.Fatalf("got %+v, want %+v", got, wantInfo)
	}

	// An answer that echoes the number in <contact> matches by it.
	echoed := `<iq type="result"><usync><list><user jid="441234@s.whatsapp.net"><contact type="in">+441234</contact></user></list></usync></iq>`
	got, err = parseContactAnswer(mustUnmarshal(t, echoed), numbers)
	if err != nil || !got[2].In || got[0].In {
		t.Fatalf("echoed: %+v, %v", got, err)
	}

	malformed := map[string]string{
		"no contact":   `<iq type="result"><usync><list><user jid="441234@s.whatsapp.net"/></list></usync></iq>`,
		"bad type":     `<iq type="result"><usync><list><user jid="441234@s.whatsapp.net"><contact type="maybe"/></user></list></usync></iq>`,
		"in no jid":    `<iq type="result"><usync><list><user><contact type="in">+441234</contact></user></list></usync></iq>`,
		"bad jid":      `<iq type="result"><usync><list><user jid="x@y"><contact type="out"/></user></list></usync></iq>`,
		"in but group": `<iq type="result"><usync><list><user jid="1-2@g.us"><contact type="in"/></user></list></usync></iq>`,
	}
	for name, a := range malformed {
		if _, err := parseContactAnswer(mustUnmarshal(t, a), numbers); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
