package interop

import (
	"reflect"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

func TestMediaConn(t *testing.T) {
	if got := mustMarshal(t, buildMediaConnIQ()); got != `<iq to="s.whatsapp.net" type="set" xmlns="w:m"><media_conn/></iq>` {
		t.Fatalf("media_conn encodes as %s", got)
	}
	now := time.Unix(1700000000, 0)
	answer := `<iq type="result"><media_conn auth="tok" ttl="300"><host hostname="mmg.whatsapp.net"/><host hostname="127.0.0.1:8443"/></media_conn></iq>`
	got, err := parseMediaConn(mustUnmarshal(t, answer), now)
	if err != nil {
		t.Fatal(err)
	}
	want := MediaConn{Auth: "tok", TTL: 300 * time.Second, Hosts: []string{"mmg.whatsapp.net", "127.0.0.1:8443"}, FetchedAt: now}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if got.Expired(now.Add(299*time.Second)) || !got.Expired(now.Add(300*time.Second)) {
		t.Fatal("expiry is off")
	}

	malformed := map[string]string{
		"no media_conn": `<iq type="result"/>`,
		"no auth":       `<iq type="result"><media_conn ttl="300"><host hostname="a.b"/></media_conn></iq>`,
		"no ttl":        `<iq type="result"><media_conn auth="x"><host hostname="a.b"/></media_conn></iq>`,
		"zero ttl":      `<iq type="result"><media_conn auth="x" ttl="0"><host hostname="a.b"/></media_conn></iq>`,
		"no host":       `<iq type="result"><media_conn auth="x" ttl="1"/></iq>`,
		"host path":     `<iq type="result"><media_conn auth="x" ttl="1"><host hostname="evil.example/x"/></media_conn></iq>`,
		"host userinfo": `<iq type="result"><media_conn auth="x" ttl="1"><host hostname="a@evil.example"/></media_conn></iq>`,
		"host scheme":   `<iq type="result"><media_conn auth="x" ttl="1"><host hostname="https://a.b"/></media_conn></iq>`,
		"bad port":      `<iq type="result"><media_conn auth="x" ttl="1"><host hostname="a.b:99999"/></media_conn></iq>`,
		"empty host":    `<iq type="result"><media_conn auth="x" ttl="1"><host/></media_conn></iq>`,
	}
	for name, a := range malformed {
		if _, err := parseMediaConn(mustUnmarshal(t, a), now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBlocklistAndSpam(t *testing.T) {
	alice := jid.MustParse("491701234567:2@s.whatsapp.net")
	for _, action := range []string{"block", "unblock"} {
		iq, err := buildBlocklistIQ(alice, action)
		if err != nil {
			t.Fatal(err)
		}
		want := `<iq to="s.whatsapp.net" type="set" xmlns="blocklist"><item action="` + action + `" jid="491701234567@s.whatsapp.net"/></iq>`
		if got := mustMarshal(t, iq); got != want {
			t.Fatalf("%s encodes as %s", action, got)
		}
	}
	if _, err := buildBlocklistIQ(jid.MustParse("1-2@g.us"), "block"); err == nil {
		t.Fatal("blocking a group accepted")
	}

	iq, err := buildSpamIQ([]SpamMessage{
		{ID: "A1", From: jid.MustParse("491701234567@s.whatsapp.net"), T: time.Unix(1700000000, 0)},
		{ID: "B2", From: jid.MustParse("1-2@g.us"), Participant: jid.MustParse("4917@s.whatsapp.net"), T: time.Unix(1700000001, 0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `<iq to="s.whatsapp.net" type="set" xmlns="spam"><spam_list>` +
		`<message from="491701234567@s.whatsapp.net" id="A1" t="1700000000"/>` +
		`<message from="1-2@g.us" id="B2" participant="4917@s.whatsapp.net" t="1700000001"/>` +
		`</spam_list></iq>`
	if got := mustMarshal(t, iq); got != want {
		t.Fatalf("spam encodes as\n%s\nwant\n%s", got, want)
	}
	if _, err := buildSpamIQ([]SpamMessage{{ID: "A"}}); err == nil {
		t.Fatal("report without from and t accepted")
	}
}

func TestReceipts(t *testing.T) {
	alice := jid.MustParse("491701234567@s.whatsapp.net")
	group := jid.MustParse("1-2@g.us")
	ts := time.Unix(1700000000, 0)
	tests := []struct {
		name string
		r    Receipt
		want string
	}{
		{"delivered", Receipt{Chat: alice, IDs: []string{"M1"}}, `<receipt id="M1" to="491701234567@s.whatsapp.net"/>`},
		{"read", Receipt{Chat: alice, IDs: []string{"M1"}, Type: ReceiptRead, T: ts},
			`<receipt id="M1" t="1700000000" to="491701234567@s.whatsapp.net" type="read"/>`},
		{"played", Receipt{Chat: alice, IDs: []string{"M1"}, Type: ReceiptPlayed, T: ts},
			`<receipt id="M1" t="1700000000" to="491701234567@s.whatsapp.net" type="played"/>`},
		{"several in a group", Receipt{Chat: group, Participant: alice, IDs: []string{"M1", "M2", "M3"}, Type: ReceiptRead, T: ts},
			`<receipt id="M1" participant="491701234567@s.whatsapp.net" t="1700000000" to="1-2@g.us" type="read">` +
				`<list><item id="M2"/><item id="M3"/></list></receipt>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := BuildReceipt(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			got := mustMarshal(t, n)
			if got != tt.want {
				t.Fatalf("encodes as\n%s\nwant\n%s", got, tt.want)
			}
			// Received, the same with from.
			n.Attrs["from"] = n.Attrs["to"]
			delete(n.Attrs, "to")
			parsed, err := ParseReceipt(mustUnmarshal(t, mustMarshal(t, n)))
			if err != nil || !reflect.DeepEqual(parsed, tt.r) {
				t.Fatalf("parsed %+v, %v; want %+v", parsed, err, tt.r)
			}
		})
	}
	for _, bad := range []Receipt{
		{Chat: alice},
		{IDs: []string{"x"}},
		{Chat: alice, IDs: []string{"x"}, Type: ReceiptRead},
		{Chat: alice, IDs: []string{""}},
		{Chat: alice, IDs: []string{"x"}, Type: ReceiptRetry, T: ts},
	} {
		if _, err := BuildReceipt(bad); err == nil {
			t.Errorf("receipt %+v accepted", bad)
		}
	}
	for _, bad := range []string{
		`<receipt id="x"/>`,
		`<receipt from="491701234567@s.whatsapp.net"/>`,
		`<receipt from="491701234567@s.whatsapp.net" id="x" t="later"/>`,
		`<receipt from="491701234567@s.whatsapp.net" id="x" participant="?"/>`,
		`<message from="491701234567@s.whatsapp.net" id="x"/>`,
	} {
		if _, err := ParseReceipt(mustUnmarshal(t, bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestChatStates(t *testing.T) {
	alice := jid.MustParse("491701234567@s.whatsapp.net")
	tests := []struct {
		state ChatStateKind
		want  string
	}{
		{ChatComposing, `<chatstate to="491701234567@s.whatsapp.net"><composing/></chatstate>`},
		{ChatRecording, `<chatstate to="491701234567@s.whatsapp.net"><composing media="audio"/></chatstate>`},
		{ChatPaused, `<chatstate to="491701234567@s.whatsapp.net"><paused/></chatstate>`},
	}
	for _, tt := range tests {
		n, err := BuildChatState(alice, tt.state)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustMarshal(t, n); got != tt.want {
			t.Fatalf("%s encodes as %s", tt.state, got)
		}
		n.Attrs = map[string]string{"from": "1-2@g.us", "participant": alice.String()}
		cs, err := ParseChatState(n)
		if err != nil || cs.State != tt.state || cs.Participant != alice || cs.From != jid.MustParse("1-2@g.us") {
			t.Fatalf("parsed %+v, %v", cs, err)
		}
	}
	if _, err := BuildChatState(alice, "dancing"); err == nil {
		t.Fatal("unknown state accepted")
	}
	for _, bad := range []string{
		`<chatstate from="491701234567@s.whatsapp.net"/>`,
		`<chatstate from="491701234567@s.whatsapp.net"><dancing/></chatstate>`,
		`<chatstate><paused/></chatstate>`,
		`<chatstate from="491701234567@s.whatsapp.net"><paused/><composing/></chatstate>`,
	} {
		if _, err := ParseChatState(mustUnmarshal(t, bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestParseNotification(t *testing.T) {
	alice := jid.MustParse("491701234567@s.whatsapp.net")
	tests := []struct {
		name string
		in   string
		want NotificationInfo
		bad  bool
	}{
		{"prekeys low", `<notification from="s.whatsapp.net" id="1" type="encrypt"><count value="4"/></notification>`, &PreKeysLow{Count: 4}, false},
		{"identity", `<notification from="491701234567@s.whatsapp.net" id="1" type="encrypt"><identity/></notification>`, &IdentityChanged{User: alice}, false},
		{"devices add", `<notification from="491701234567@s.whatsapp.net" id="1" type="devices"><add><device jid="491701234567:4@s.whatsapp.net"/></add></notification>`,
			&DevicesChanged{User: alice, Added: []jid.JID{alice.WithDevice(4)}}, false},
		{"devices remove", `<notification from="491701234567@s.whatsapp.net" id="1" type="devices"><remove><device jid="491701234567:2@s.whatsapp.net"/></remove></notification>`,
			&DevicesChanged{User: alice, Removed: []jid.JID{alice.WithDevice(2)}}, false},
		{"restriction", `<notification from="s.whatsapp.net" id="1" type="account_sync"><restriction reason="spam" until="1700003600"/></notification>`,
			&AccountRestricted{Reason: "spam", Until: time.Unix(1700003600, 0)}, false},
		{"restriction without end", `<notification from="s.whatsapp.net" id="1" type="account_sync"><restriction reason="spam"/></notification>`,
			&AccountRestricted{Reason: "spam"}, false},
		{"group", `<notification from="1-2@g.us" id="1" type="w:gp2" participant="491701234567@s.whatsapp.net"><leave/></notification>`,
			&GroupChange{Group: jid.MustParse("1-2@g.us"), Actor: alice, Action: "leave"}, false},
		{"group change without participants", `<notification from="1-2@g.us" id="1" type="w:gp2"><add/></notification>`, nil, true},
		{"unknown encrypt", `<notification from="s.whatsapp.net" id="1" type="encrypt"><digest/></notification>`, nil, false},
		{"bad count", `<notification from="s.whatsapp.net" id="1" type="encrypt"><count value="x"/></notification>`, nil, true},
		{"identity bad from", `<notification from="nobody" id="1" type="encrypt"><identity/></notification>`, nil, true},
		{"devices other user", `<notification from="491701234567@s.whatsapp.net" id="1" type="devices"><add><device jid="4912:4@s.whatsapp.net"/></add></notification>`, nil, true},
		{"devices empty", `<notification from="491701234567@s.whatsapp.net" id="1" type="devices"/>`, nil, true},
		{"devices bad jid", `<notification from="491701234567@s.whatsapp.net" id="1" type="devices"><add><device jid="x"/></add></notification>`, nil, true},
		{"bad until", `<notification from="s.whatsapp.net" id="1" type="account_sync"><restriction until="soon"/></notification>`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNotification(mustUnmarshal(t, tt.in))
			if (err != nil) != tt.bad {
				t.Fatalf("err %v, bad %v", err, tt.bad)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}
