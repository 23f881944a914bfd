package callbacks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

var (
	_ TokenChecker = (*database.Database)(nil)
	_ Pusher       = (*recordingPusher)(nil)
	_ MediaServer  = (*fakeMedia)(nil)
)

var (
	waSecret   = []byte("whatsapp-callback-secret-0123456789abcdef")
	msgrSecret = []byte("messenger-callback-secret-0123456789abcdef")
	fooSecret  = []byte("somebody-elses-secret-0123456789abcdef")
)

const (
	waAccount   = "12-491701234567@interop"
	msgrAccount = "34-491701234567@interop"
)

type push struct {
	Network string
	Account jid.JID
	Pending int
}

type recordingPusher struct {
	mu     sync.Mutex
	pushes []push
	err    error
}

func (p *recordingPusher) Push(_ context.Context, network string, account jid.JID, pending int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.pushes = append(p.pushes, push{network, account, pending})
	return nil
}

func (p *recordingPusher) take() []push {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.pushes
	p.pushes = nil
	return out
}

type fakeMedia struct{ calls []string }

func (m *fakeMedia) ServeMedia(w http.ResponseWriter, _ *http.Request, network, path string) {
	m.calls = append(m.calls, network+" "+path)
	_, _ = w.Write([]byte("blob"))
}

type failingTokens struct{}

func (failingTokens) CheckToken(context.Context, string, string, string) (bool, time.Time, error) {
	return false, time.Time{}, errors.New("database is down")
}

type fixture struct {
	h      *Handler
	db     *database.Database
	pusher *recordingPusher
	media  *fakeMedia
	now    time.Time
	logs   *bytes.Buffer
	waTok  string
	mTok   string
	waExp  time.Time
	revTok string // revoked WhatsApp token of another account
	expTok string // expired WhatsApp token of a third account
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{pusher: &recordingPusher{}, media: &fakeMedia{}, now: time.Unix(1_700_000_000, 0), logs: &bytes.Buffer{}}
	f.db = database.New(sqltest.SQLite(t), zerolog.Nop())
	f.db.Now = func() time.Time { return f.now }
	if err := f.db.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	mint := func(network, account string, ttl time.Duration) (string, time.Time) {
		tok, exp, err := f.db.MintToken(ctx, network, account, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok, exp
	}
	f.waTok, f.waExp = mint("whatsapp", waAccount, 24*time.Hour)
	f.mTok, _ = mint("messenger", msgrAccount, 24*time.Hour)
	f.revTok, _ = mint("whatsapp", "12-4917000@interop", time.Hour)
	if _, err := f.db.RevokeTokens(ctx, "whatsapp", "12-4917000@interop"); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(-2 * time.Hour)
	f.expTok, _ = mint("whatsapp", "12-4917001@interop", time.Hour)
	f.now = f.now.Add(2 * time.Hour)
	f.h, err = New(Config{
		Networks: []Network{{Name: "whatsapp", IntegratorID: 12, Secret: waSecret}, {Name: "messenger", IntegratorID: 34, Secret: msgrSecret}},
		Tokens:   f.db, Pusher: f.pusher, Media: f.media,
		Now: func() time.Time { return f.now },
		Log: zerolog.New(f.logs).Level(zerolog.DebugLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func signed(method, path, body string, secret []byte, at time.Time) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	callback.SignRequest(r, secret, []byte(body), at)
	return r
}

func authBody(account, token string) string {
	b, _ := json.Marshal(map[string]string{"jid": account, "token": token})
	return string(b)
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	ok := func(exp time.Time) string {
		return `{"valid":true,"expires_at":` + strconv.FormatInt(exp.Unix(), 10) + "}\n"
	}
	const refused = "{\"valid\":false}\n"
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		tokens TokenChecker
		status int
		answer string // "" means: do not compare
	}{
		{name: "good whatsapp token", status: 200, answer: ok(f.waExp),
			req: func() *http.Request { return signed("POST", AuthPath, authBody(waAccount, f.waTok), waSecret, f.now) }},
		{name: "good messenger token", status: 200,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody(msgrAccount, f.mTok), msgrSecret, f.now)
			}},
		{name: "wrong token", status: 401, answer: refused,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody(waAccount, f.waTok+"x"), waSecret, f.now)
			}},
		{name: "empty token", status: 401, answer: refused,
			req: func() *http.Request { return signed("POST", AuthPath, authBody(waAccount, ""), waSecret, f.now) }},
		{name: "revoked token", status: 401, answer: refused,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody("12-4917000@interop", f.revTok), waSecret, f.now)
			}},
		{name: "expired token", status: 401, answer: refused,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody("12-4917001@interop", f.expTok), waSecret, f.now)
			}},
		{name: "unknown account", status: 401, answer: refused,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody("12-491709999999@interop", f.waTok), waSecret, f.now)
			}},
		{name: "other integrator", status: 401, answer: refused,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody("13-491701234567@interop", f.waTok), waSecret, f.now)
			}},
		{name: "not an interop jid", status: 401, answer: refused,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody("491701234567@s.whatsapp.net", f.waTok), waSecret, f.now)
			}},
		{name: "device jid", status: 401, answer: refused,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody("12-491701234567:1@interop", f.waTok), waSecret, f.now)
			}},
		// Messenger's secret signed it, so it is a Messenger login, which this is not.
		{name: "whatsapp token through messenger", status: 401, answer: refused,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody("34-491701234567@interop", f.waTok), msgrSecret, f.now)
			}},
		{name: "bad signature", status: 401,
			req: func() *http.Request { return signed("POST", AuthPath, authBody(waAccount, f.waTok), fooSecret, f.now) }},
		{name: "stale timestamp", status: 401,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody(waAccount, f.waTok), waSecret, f.now.Add(-6*time.Minute))
			}},
		{name: "future timestamp", status: 401,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody(waAccount, f.waTok), waSecret, f.now.Add(6*time.Minute))
			}},
		{name: "missing headers", status: 401,
			req: func() *http.Request {
				return httptest.NewRequest("POST", AuthPath, strings.NewReader(authBody(waAccount, f.waTok)))
			}},
		{name: "body tampered", status: 401,
			req: func() *http.Request {
				r := signed("POST", AuthPath, authBody("12-4917000@interop", f.waTok), waSecret, f.now)
				r.Body = io.NopCloser(strings.NewReader(authBody(waAccount, f.waTok)))
				return r
			}},
		{name: "body too large", status: 413,
			req: func() *http.Request {
				return signed("POST", AuthPath, authBody(waAccount, strings.Repeat("a", DefaultMaxBody)), waSecret, f.now)
			}},
		{name: "not JSON", status: 400,
			req: func() *http.Request { return signed("POST", AuthPath, "jid=x", waSecret, f.now) }},
		{name: "GET", status: 405,
			req: func() *http.Request { return signed("GET", AuthPath, "", waSecret, f.now) }},
		{name: "database trouble is not a refusal", status: 500, tokens: failingTokens{},
			req: func() *http.Request { return signed("POST", AuthPath, authBody(waAccount, f.waTok), waSecret, f.now) }},
		{name: "unknown path", status: 404,
			req: func() *http.Request { return signed("POST", PathPrefix+"other", "{}", waSecret, f.now) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := f.h
			if tc.tokens != nil {
				cfg := f.h.cfg
				cfg.Tokens = tc.tokens
				var err error
				if h, err = New(cfg); err != nil {
					t.Fatal(err)
				}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tc.req())
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.answer != "" && w.Body.String() != tc.answer {
				t.Fatalf("answer %q, want %q", w.Body, tc.answer)
			}
		})
	}
	for _, tok := range []string{f.waTok, f.mTok, f.revTok, f.expTok} {
		if strings.Contains(f.logs.String(), tok) {
			t.Fatal("a token was logged")
		}
	}
	if !strings.Contains(f.logs.String(), "Refused an unverified callback") {
		t.Fatal("refusals were not logged at all; the token check above proves nothing")
	}
}

func TestPush(t *testing.T) {
	f := newFixture(t)
	body := func(account string, pending int) string {
		b, _ := json.Marshal(map[string]any{"jid": account, "pending": pending})
		return string(b)
	}
	for _, tc := range []struct {
		name       string
		req        *http.Request
		pusherErr  error
		status     int
		wantPushes []push
	}{
		{name: "whatsapp", req: signed("POST", PushPath, body(waAccount, 3), waSecret, f.now), status: 202,
			wantPushes: []push{{"whatsapp", jid.MustParse(waAccount), 3}}},
		{name: "messenger", req: signed("POST", PushPath, body(msgrAccount, 1), msgrSecret, f.now), status: 202,
			wantPushes: []push{{"messenger", jid.MustParse(msgrAccount), 1}}},
		{name: "no login", req: signed("POST", PushPath, body(waAccount, 3), waSecret, f.now), pusherErr: ErrUnknownAccount, status: 404},
		{name: "pusher trouble", req: signed("POST", PushPath, body(waAccount, 3), waSecret, f.now), pusherErr: errors.New("boom"), status: 500},
		{name: "other integrator", req: signed("POST", PushPath, body(msgrAccount, 3), waSecret, f.now), status: 404},
		{name: "negative pending", req: signed("POST", PushPath, body(waAccount, -1), waSecret, f.now), status: 400},
		{name: "bad signature", req: signed("POST", PushPath, body(waAccount, 3), fooSecret, f.now), status: 401},
		{name: "stale", req: signed("POST", PushPath, body(waAccount, 3), waSecret, f.now.Add(-10*time.Minute)), status: 401},
		{name: "PUT", req: signed("PUT", PushPath, body(waAccount, 3), waSecret, f.now), status: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.pusher.err = tc.pusherErr
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, tc.req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			got := f.pusher.take()
			if len(got) != len(tc.wantPushes) {
				t.Fatalf("pushes %v, want %v", got, tc.wantPushes)
			}
			for i := range got {
				if got[i] != tc.wantPushes[i] {
					t.Fatalf("push %v, want %v", got[i], tc.wantPushes[i])
				}
			}
		})
	}
}

func TestMedia(t *testing.T) {
	f := newFixture(t)
	get := func(path string, secret []byte, at time.Time) *http.Request {
		r := httptest.NewRequest("GET", path, nil)
		callback.SignMediaFetch(r, secret, at)
		return r
	}
	// strip is the reverse proxy removing the public base URL's path.
	strip := func(prefix string, r *http.Request) *http.Request {
		r.URL.Path = strings.TrimPrefix(r.URL.Path, prefix)
		r.URL.RawPath = ""
		r.RequestURI = r.URL.RequestURI()
		return r
	}
	for _, tc := range []struct {
		name   string
		req    *http.Request
		noHook bool
		prefix string
		status int
		call   string
	}{
		{name: "whatsapp", req: get(MediaPrefix+"ab%2Fc?x=1", waSecret, f.now), status: 200, call: "whatsapp ab%2Fc"},
		{name: "messenger", req: get(MediaPrefix+"xyz", msgrSecret, f.now), status: 200, call: "messenger xyz"},
		{name: "no media server", req: get(MediaPrefix+"xyz", waSecret, f.now), noHook: true, status: 404},
		{name: "bad signature", req: get(MediaPrefix+"xyz", fooSecret, f.now), status: 401},
		{name: "stale", req: get(MediaPrefix+"xyz", waSecret, f.now.Add(-6*time.Minute)), status: 401},
		{name: "unsigned", req: httptest.NewRequest("GET", MediaPrefix+"xyz", nil), status: 401},
		// Behind a reverse proxy that strips the base URL's path, Meta signed the public
		// path (with /meta) and the request arrives without it.
		{name: "public prefix stripped", req: strip("/meta", get("/meta"+MediaPrefix+"xyz", waSecret, f.now)), prefix: "/meta",
			status: 200, call: "whatsapp xyz"},
		{name: "public prefix, fetch of the plain path", req: get(MediaPrefix+"xyz", waSecret, f.now), prefix: "/meta",
			status: 200, call: "whatsapp xyz"},
		{name: "signed for another prefix", req: strip("/other", get("/other"+MediaPrefix+"xyz", waSecret, f.now)), prefix: "/meta",
			status: 401},
		{name: "prefix signed, no prefix configured", req: strip("/meta", get("/meta"+MediaPrefix+"xyz", waSecret, f.now)), status: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := f.h
			if tc.noHook || tc.prefix != "" {
				cfg := f.h.cfg
				if tc.noHook {
					cfg.Media = nil
				}
				cfg.PublicPathPrefix = tc.prefix
				h, _ = New(cfg)
			}
			f.media.calls = nil
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tc.req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if (tc.call == "") != (len(f.media.calls) == 0) || (tc.call != "" && f.media.calls[0] != tc.call) {
				t.Fatalf("media calls %v, want %q", f.media.calls, tc.call)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tokens, pusher := failingTokens{}, &recordingPusher{}
	for name, nets := range map[string][]Network{
		"no networks":   nil,
		"short secret":  {{Name: "whatsapp", Secret: []byte("short")}},
		"shared secret": {{Name: "whatsapp", Secret: waSecret}, {Name: "messenger", Secret: waSecret}},
		"twice":         {{Name: "whatsapp", Secret: waSecret}, {Name: "whatsapp", Secret: msgrSecret}},
		"no name":       {{Secret: waSecret}},
	} {
		if _, err := New(Config{Networks: nets, Tokens: tokens, Pusher: pusher}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Config{Networks: []Network{{Name: "whatsapp", Secret: waSecret}}, Pusher: pusher}); err == nil {
		t.Error("accepted a config without a token checker")
	}
}

// TestMount: the handler answers under the prefix on a ServeMux that has other routes,
// as on bridgev2's appservice router.
func TestMount(t *testing.T) {
	f := newFixture(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/mau/live", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) })
	f.h.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	body := authBody(waAccount, f.waTok)
	req, _ := http.NewRequest("POST", srv.URL+AuthPath, strings.NewReader(body))
	callback.SignRequest(req, waSecret, []byte(body), f.now)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("auth through the mux: %d", resp.StatusCode)
	}
	if resp, err := srv.Client().Get(srv.URL + "/_matrix/mau/live"); err != nil || resp.StatusCode != 299 {
		t.Fatalf("other routes broken: %v %v", resp, err)
	}
}
