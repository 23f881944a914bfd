package callback

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	otherKey   = []byte("another-secret-another-secret-xx")
	testNow    = time.Unix(1700000000, 0)
)

// TestSignVectors pins both formats against values computed with Python's hmac module
// (the same vectors the simulator's tests pinned before it used this package).
func TestSignVectors(t *testing.T) {
	if got, want := Sign([]byte("secret"), "1700000000", []byte("{}")),
		"sha256=346a8f68fec04c9eee008b1bb9797f79920c7c67fdc75c2c67108852e95a3505"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if got, want := MediaSignature([]byte("secret"), "/media/x", "1700000000"),
		"sha256=030559c736beea5411fbc2c56b64b89aa685794011de0cd15a6d5c383e3442ef"; got != want {
		t.Errorf("MediaSignature = %s, want %s", got, want)
	}
}

func jsonRequest(body string, signedAt time.Time, secret []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://provider.example/_interop/v1/auth", strings.NewReader(body))
	SignRequest(r, secret, []byte(body), signedAt)
	return r
}

func TestVerifyRequest(t *testing.T) {
	const body = `{"jid":"1-4917@interop","token":"t"}`
	for _, tc := range []struct {
		name    string
		req     func() *http.Request
		maxBody int64
		want    error
	}{
		{name: "good", req: func() *http.Request { return jsonRequest(body, testNow, testSecret) }},
		{name: "4m59s old", req: func() *http.Request { return jsonRequest(body, testNow.Add(-299*time.Second), testSecret) }},
		{name: "4m59s ahead", req: func() *http.Request { return jsonRequest(body, testNow.Add(299*time.Second), testSecret) }},
		{name: "uppercase hex", req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			sig := r.Header.Get(HeaderSignature)
			r.Header.Set(HeaderSignature, "sha256="+strings.ToUpper(strings.TrimPrefix(sig, "sha256=")))
			return r
		}},
		{name: "other secret", want: ErrBadSignature, req: func() *http.Request { return jsonRequest(body, testNow, otherKey) }},
		{name: "stale", want: ErrStale, req: func() *http.Request { return jsonRequest(body, testNow.Add(-301*time.Second), testSecret) }},
		{name: "future", want: ErrStale, req: func() *http.Request { return jsonRequest(body, testNow.Add(301*time.Second), testSecret) }},
		{name: "far future", want: ErrStale, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Set(HeaderTimestamp, "9223372036854775807")
			return r
		}},
		{name: "no timestamp", want: ErrMissingHeaders, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Del(HeaderTimestamp)
			return r
		}},
		{name: "no signature", want: ErrMissingHeaders, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Del(HeaderSignature)
			return r
		}},
		{name: "timestamp not a number", want: ErrBadTimestamp, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Set(HeaderTimestamp, "1700000000.5")
			return r
		}},
		{name: "timestamp with sign", want: ErrBadTimestamp, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Set(HeaderTimestamp, "+1700000000")
			return r
		}},
		{name: "timestamp changed after signing", want: ErrBadSignature, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Set(HeaderTimestamp, strconv.FormatInt(testNow.Unix()+1, 10))
			return r
		}},
		{name: "body tampered", want: ErrBadSignature, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(body, `"t"`, `"u"`, 1)))
			return r
		}},
		{name: "no sha256 prefix", want: ErrBadSignature, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Set(HeaderSignature, strings.TrimPrefix(r.Header.Get(HeaderSignature), "sha256="))
			return r
		}},
		{name: "signature not hex", want: ErrBadSignature, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Set(HeaderSignature, "sha256=zz")
			return r
		}},
		{name: "truncated signature", want: ErrBadSignature, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.Header.Set(HeaderSignature, r.Header.Get(HeaderSignature)[:40])
			return r
		}},
		{name: "body over limit", maxBody: 10, want: ErrBodyTooLarge, req: func() *http.Request { return jsonRequest(body, testNow, testSecret) }},
		{name: "body over limit without length", maxBody: 10, want: ErrBodyTooLarge, req: func() *http.Request {
			r := jsonRequest(body, testNow, testSecret)
			r.ContentLength = -1
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			got, err := VerifyRequest(r, testSecret, testNow, tc.maxBody)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("VerifyRequest = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				return
			}
			if string(got) != body {
				t.Fatalf("body %q, want %q", got, body)
			}
			again, _ := io.ReadAll(r.Body)
			if string(again) != body {
				t.Fatalf("body not given back: %q", again)
			}
		})
	}
}

func TestVerifyRequestAnyPicksTheSecret(t *testing.T) {
	const body = `{"jid":"1-4917@interop","pending":2}`
	secrets := [][]byte{testSecret, otherKey}
	for want, secret := range secrets {
		i, got, err := VerifyRequestAny(jsonRequest(body, testNow, secret), secrets, testNow, 0)
		if err != nil || i != want || !bytes.Equal(got, []byte(body)) {
			t.Errorf("secret %d: index %d, body %q, err %v", want, i, got, err)
		}
	}
	if i, _, err := VerifyRequestAny(jsonRequest(body, testNow, []byte("third")), secrets, testNow, 0); !errors.Is(err, ErrBadSignature) || i != -1 {
		t.Errorf("unknown secret: index %d, err %v", i, err)
	}
	if _, _, err := VerifyRequestAny(jsonRequest(body, testNow, testSecret), nil, testNow, 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no secrets: %v", err)
	}
}

func mediaRequest(method, url string, signedAt time.Time, secret []byte) *http.Request {
	r := httptest.NewRequest(method, url, nil)
	SignMediaFetch(r, secret, signedAt)
	return r
}

func TestVerifyMediaFetch(t *testing.T) {
	const url = "http://provider.example/_interop/v1/media/whatsapp/abc%2Fdef?x=1"
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		want error
	}{
		{name: "good", req: func() *http.Request { return mediaRequest(http.MethodGet, url, testNow, testSecret) }},
		{name: "query is not signed", req: func() *http.Request {
			r := mediaRequest(http.MethodGet, url, testNow, testSecret)
			r.URL.RawQuery = "y=2"
			return r
		}},
		{name: "other secret", want: ErrBadSignature, req: func() *http.Request { return mediaRequest(http.MethodGet, url, testNow, otherKey) }},
		{name: "path tampered", want: ErrBadSignature, req: func() *http.Request {
			r := mediaRequest(http.MethodGet, url, testNow, testSecret)
			r.URL.Path, r.URL.RawPath = "/_interop/v1/media/whatsapp/other", ""
			return r
		}},
		{name: "escaping changed", want: ErrBadSignature, req: func() *http.Request {
			r := mediaRequest(http.MethodGet, url, testNow, testSecret)
			r.URL.RawPath = "" // abc/def instead of abc%2Fdef
			return r
		}},
		{name: "not GET", want: ErrBadSignature, req: func() *http.Request {
			r := mediaRequest(http.MethodGet, url, testNow, testSecret)
			r.Method = http.MethodDelete
			return r
		}},
		{name: "stale", want: ErrStale, req: func() *http.Request {
			return mediaRequest(http.MethodGet, url, testNow.Add(-6*time.Minute), testSecret)
		}},
		{name: "future", want: ErrStale, req: func() *http.Request { return mediaRequest(http.MethodGet, url, testNow.Add(6*time.Minute), testSecret) }},
		{name: "no headers", want: ErrMissingHeaders, req: func() *http.Request { return httptest.NewRequest(http.MethodGet, url, nil) }},
		{name: "bad timestamp", want: ErrBadTimestamp, req: func() *http.Request {
			r := mediaRequest(http.MethodGet, url, testNow, testSecret)
			r.Header.Set(HeaderTimestamp, "yesterday")
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyMediaFetch(tc.req(), testSecret, testNow)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("VerifyMediaFetch = %v, want %v", err, tc.want)
			}
		})
	}
	if i, err := VerifyMediaFetchAny(mediaRequest(http.MethodGet, url, testNow, otherKey), [][]byte{testSecret, otherKey}, testNow); err != nil || i != 1 {
		t.Errorf("VerifyMediaFetchAny = %d, %v; want 1", i, err)
	}
}

// TestErrorsHideBody: refusals end up in logs, so they must not carry the body.
func TestErrorsHideBody(t *testing.T) {
	const body = `{"token":"very-secret-token"}`
	r := jsonRequest(body, testNow, otherKey)
	_, err := VerifyRequest(r, testSecret, testNow, 0)
	if err == nil || strings.Contains(err.Error(), "very-secret-token") {
		t.Fatalf("error %v", err)
	}
}

func BenchmarkVerifyRequest(b *testing.B) {
	body := []byte(`{"jid":"1-491701234567@interop","token":"0123456789abcdef0123456789abcdef"}`)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	sig := Sign(testSecret, ts, body)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/_interop/v1/auth", bytes.NewReader(body))
		r.Header.Set(HeaderTimestamp, ts)
		r.Header.Set(HeaderSignature, sig)
		if _, err := VerifyRequest(r, testSecret, testNow, 0); err != nil {
			b.Fatal(err)
		}
	}
}
