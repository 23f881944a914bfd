package control_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// FuzzControlAPI throws arbitrary paths and bodies at a running simulator's control
// API: it must answer every one with a JSON status below 500 (a recovered panic or an
// unmapped error would be a 500), and keep working.
func FuzzControlAPI(f *testing.F) {
	env := simtest.Start(f)
	env.MustCall(f, 201, "POST", "/v1/users", map[string]any{"number": "+491701111111", "opt_in": []int{1}}, nil)
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
	seeds := []struct {
		m          uint8
		path, body string
	}{
		{1, "users", `{"number": "+491702222222"}`},
		{1, "users", `{"fbid": "1", "devices": 0, "opt_in": [0]}`},
		{3, "users/491701111111@s.whatsapp.net", `{"name": null, "phone": "+"}`},
		{1, "users/491701111111@s.whatsapp.net/messages", `{"to": "1-1@interop", "kind": "text", "text": "x"}`},
		{1, "users/491701111111@s.whatsapp.net/messages", `{"to": "491701111111:9@s.whatsapp.net", "kind": "reaction", "target": {}}`},
		{1, "users/491701111111@s.whatsapp.net/messages", `{"to": "1-2@g.us", "kind": "image", "media": {"size": -5}}`},
		{1, "users/491701111111@s.whatsapp.net/receipts", `{"chat": "x@y", "ids": [""]}`},
		{0, "users/491701111111@s.whatsapp.net/inbox?since=99999999999999999999", ``},
		{1, "faults", `{"endpoint": "491701111111@s.whatsapp.net", "kind": "refuse", "code": 999}`},
		{2, "users/491701111111@s.whatsapp.net/opt-in", `{"integrators": [1, 1, 65535]}`},
		{1, "groups", `{"actor": "491701111111@s.whatsapp.net", "subject": "s", "participants": ["@", ":1@"]}`},
		{1, "groups/1-1@g.us/participants", `{"actor": "491701111111@s.whatsapp.net", "action": "add", "participants": ["491709@s.whatsapp.net"]}`},
		{4, "users/491701111111@s.whatsapp.net/devices/491701111111:65535@s.whatsapp.net", ``},
		{1, "media/faults", `{"fault": "corrupt", "direct_path": "/.."}`},
	}
	for _, s := range seeds {
		f.Add(s.m, s.path, []byte(s.body))
	}
	// A request still unanswered after this long counts as a hang.
	client := &http.Client{Timeout: 20 * time.Second}
	f.Fuzz(func(t *testing.T, m uint8, path string, body []byte) {
		// Long-polls and faults (a 10-minute delay, refusing every send) only make the
		// fuzzer slow; they are tested on their own.
		if strings.Contains(path, "wait") || strings.Contains(path, "fault") {
			return
		}
		// Bytes Go's client puts raw on the request line are refused by net/http's
		// server before any handler runs, with its own plain-text 400.
		if strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], env.Sim.ControlURL()+"/v1/"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+simtest.Token)
		resp, err := client.Do(req)
		var ue *url.Error
		if errors.As(err, &ue) && ue.Timeout() {
			t.Fatalf("%s /v1/%s %q hung", req.Method, path, body)
		} else if err != nil {
			return // a path Go's client will not send
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("%s /v1/%s %q = %d: %s", req.Method, path, body, resp.StatusCode, data)
		}
		if !json.Valid(data) {
			t.Fatalf("%s /v1/%s answered non-JSON: %q", req.Method, path, data)
		}
	})
}
