package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
)

// provider is a fake third-party media origin (section 7): it serves blobs only to
// requests whose signature and timestamp verify.
type provider struct {
	srv    *httptest.Server
	secret []byte
	blobs  map[string][]byte
	hits   atomic.Int32
	// endless streams zeros forever at /endless, without a Content-Length.
	streamed atomic.Int64
}

func newProvider(t testing.TB) *provider {
	p := &provider{secret: []byte("0123456789abcdef0123456789abcdef"), blobs: map[string][]byte{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		if err := callback.VerifyMediaFetch(r, p.secret, time.Now()); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/endless":
			buf := make([]byte, 32<<10)
			for {
				n, err := w.Write(buf)
				p.streamed.Add(int64(n))
				if err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		case "/redirect":
			http.Redirect(w, r, "https://elsewhere.example/blob", http.StatusFound)
			return
		}
		blob, ok := p.blobs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) integrator() gateway.Integrator {
	return gateway.Integrator{ID: 7, Name: "Provider", MediaOrigin: p.srv.URL, CallbackSecret: p.secret}
}

func readAllAndRemove(t testing.TB, f *os.File) []byte {
	t.Helper()
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSection7_ProxyFetchesSignedAndVerified fetches a provider's blob with a signed
// request and returns the verified plaintext.
func TestSection7_ProxyFetchesSignedAndVerified(t *testing.T) {
	p := newProvider(t)
	enc := encrypt(t, 70_000, mediacrypt.Video)
	p.blobs["/media/abc"] = enc.blob
	dir := t.TempDir()
	proxy := NewProxy(ProxyConfig{TempDir: dir})
	f, err := proxy.Fetch(context.Background(), p.integrator(), p.srv.URL+"/media/abc?x=1#frag", enc.exp)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllAndRemove(t, f); !bytes.Equal(got, enc.plain) {
		t.Fatalf("plaintext differs: %d bytes, want %d", len(got), len(enc.plain))
	}
	// An origin registered with upper case and an explicit default port is the same.
	in := p.integrator()
	in.MediaOrigin = strings.ToUpper(in.MediaOrigin[:4]) + in.MediaOrigin[4:] + "/"
	if f, err = proxy.Fetch(context.Background(), in, p.srv.URL+"/media/abc", enc.exp); err != nil {
		t.Fatalf("fetch with a normalized origin: %v", err)
	}
	readAllAndRemove(t, f)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the proxy left %d files behind", len(entries))
	}
}

// TestSection7_ProxyRefusals covers each refusal of the proxy with its typed error,
// and checks that nothing is left in the spool directory.
func TestSection7_ProxyRefusals(t *testing.T) {
	p := newProvider(t)
	enc := encrypt(t, 3000, mediacrypt.Image)
	p.blobs["/ok"] = enc.blob
	big := encrypt(t, 5000, mediacrypt.Document)
	p.blobs["/big"] = big.blob
	flipped := bytes.Clone(enc.blob)
	flipped[100] ^= 1
	p.blobs["/flipped"] = flipped
	other := encrypt(t, 3000, mediacrypt.Image)
	p.blobs["/other"] = other.blob

	wrongEnc := enc.exp
	wrongEnc.FileEncSHA256 = other.exp.FileEncSHA256
	wrongPlain := enc.exp
	wrongPlain.FileSHA256 = other.exp.FileSHA256
	wrongLen := enc.exp
	wrongLen.FileLength++
	noHash := enc.exp
	noHash.FileSHA256 = nil
	bigNoLen := big.exp
	bigNoLen.FileLength = 0
	hugeDeclared := enc.exp
	hugeDeclared.FileLength = 1 << 40

	badSecret := p.integrator()
	badSecret.CallbackSecret = []byte("not the secret")
	noOrigin := p.integrator()
	noOrigin.MediaOrigin = ""
	originWithPath := p.integrator()
	originWithPath.MediaOrigin = p.srv.URL + "/media"

	host := strings.TrimPrefix(p.srv.URL, "http://")
	cases := []struct {
		name     string
		in       gateway.Integrator
		url      string
		exp      mediacrypt.Expected
		now      func() time.Time
		want     error
		wantCode int
		noHit    bool
	}{
		{name: "other host", url: "http://media.example/ok", want: ErrWrongOrigin, noHit: true},
		{name: "other scheme", url: "https://" + host + "/ok", want: ErrWrongOrigin, noHit: true},
		{name: "other port", url: "http://" + strings.Split(host, ":")[0] + ":1/ok", want: ErrWrongOrigin, noHit: true},
		{name: "credentials", url: "http://user:pw@" + host + "/ok", want: ErrWrongOrigin, noHit: true},
		{name: "relative", url: "/ok", want: ErrWrongOrigin, noHit: true},
		{name: "not http", url: "file:///etc/passwd", want: ErrWrongOrigin, noHit: true},
		{name: "no registered origin", in: noOrigin, url: p.srv.URL + "/ok", want: ErrWrongOrigin, noHit: true},
		{name: "registered origin with a path", in: originWithPath, url: p.srv.URL + "/media/ok", want: ErrWrongOrigin, noHit: true},
		{name: "bad signature", in: badSecret, url: p.srv.URL + "/ok", want: ErrHTTPStatus, wantCode: 401},
		{name: "stale timestamp", url: p.srv.URL + "/ok", now: func() time.Time { return time.Now().Add(-10 * time.Minute) },
			want: ErrHTTPStatus, wantCode: 401},
		{name: "not found", url: p.srv.URL + "/missing", want: ErrHTTPStatus, wantCode: 404},
		{name: "redirect", url: p.srv.URL + "/redirect", want: ErrHTTPStatus, wantCode: 302},
		{name: "too large by Content-Length", url: p.srv.URL + "/big", exp: bigNoLen, want: ErrTooLarge},
		{name: "too large by declared length", url: p.srv.URL + "/big", exp: big.exp, want: ErrTooLarge, noHit: true},
		{name: "huge declared length", url: p.srv.URL + "/ok", exp: hugeDeclared, want: ErrTooLarge, noHit: true},
		{name: "too large while streaming", url: p.srv.URL + "/endless", exp: bigNoLen, want: ErrTooLarge},
		{name: "bad MAC", url: p.srv.URL + "/flipped", want: ErrBadMAC},
		{name: "bad fileEncSha256", url: p.srv.URL + "/ok", exp: wrongEnc, want: ErrBadHash},
		{name: "bad fileSha256", url: p.srv.URL + "/ok", exp: wrongPlain, want: ErrBadHash},
		{name: "another blob", url: p.srv.URL + "/other", want: ErrBadMAC},
		{name: "wrong declared length", url: p.srv.URL + "/ok", exp: wrongLen, want: ErrBadBlob},
		{name: "no hash in the message", url: p.srv.URL + "/ok", exp: noHash, want: ErrBadMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			proxy := NewProxy(ProxyConfig{TempDir: dir, MaxBlobSize: 4096, Now: c.now})
			in := c.in
			if in.ID == 0 {
				in = p.integrator()
			}
			exp := c.exp
			if exp.MediaKey == nil && exp.FileEncSHA256 == nil {
				exp = enc.exp
			}
			before := p.hits.Load()
			f, err := proxy.Fetch(context.Background(), in, c.url, exp)
			if err == nil {
				readAllAndRemove(t, f)
				t.Fatalf("fetch succeeded, want %v", c.want)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var se *HTTPStatusError
			if c.wantCode != 0 && (!errors.As(err, &se) || se.Code != c.wantCode) {
				t.Fatalf("got %v, want HTTP %d", err, c.wantCode)
			}
			if hit := p.hits.Load() != before; hit == c.noHit {
				t.Fatalf("provider hit: %v, want %v", hit, !c.noHit)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("a refused fetch left %d files behind", len(entries))
			}
		})
	}
	// The endless stream was cut soon after the limit, not read to exhaustion.
	if n := p.streamed.Load(); n > 8<<20 {
		t.Fatalf("the provider streamed %d bytes before the proxy stopped", n)
	}
}

// TestProxySignature pins the signature format of section 7 against a value computed
// with Python's hmac module: the proxy signs through interop/callback, and this keeps
// the simulator's side of the contract visible here.
func TestProxySignature(t *testing.T) {
	const want = "sha256=030559c736beea5411fbc2c56b64b89aa685794011de0cd15a6d5c383e3442ef"
	now := time.Unix(1700000000, 0)
	req := httptest.NewRequest(http.MethodGet, "http://provider.example/media/x?ignored=1", nil)
	callback.SignMediaFetch(req, []byte("secret"), now)
	if got := req.Header.Get(HeaderSignature); got != want {
		t.Fatalf("signature = %s, want %s", got, want)
	}
	if err := callback.VerifyMediaFetch(req, []byte("secret"), now.Add(4*time.Minute)); err != nil {
		t.Fatalf("VerifyMediaFetch refused a good request: %v", err)
	}
	if err := callback.VerifyMediaFetch(req, []byte("secret"), now.Add(6*time.Minute)); err == nil {
		t.Fatal("VerifyMediaFetch accepted a stale timestamp")
	}
	if err := callback.VerifyMediaFetch(req, []byte("other"), now); err == nil {
		t.Fatal("VerifyMediaFetch accepted another secret")
	}
}
