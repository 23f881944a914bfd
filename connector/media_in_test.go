package connector

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// mediaHosts is metasim's media hosts behind a test server that can fail the first
// requests on purpose and counts what reaches it.
type mediaHosts struct {
	host     *media.Host
	srv      *httptest.Server
	requests atomic.Int32
	failNext atomic.Int32 // answer this many requests with failStatus first
	failWith atomic.Int32
	stall    atomic.Bool  // send half the blob, then nothing
	conns    atomic.Int32 // media_conn fetches
	// connErrs answers this many media_conn fetches with connErr first.
	connErrs atomic.Int32
	connErr  error
}

func newMediaHosts(t *testing.T) *mediaHosts {
	t.Helper()
	h, err := media.NewHost(context.Background(), media.HostConfig{Scheme: "http", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	mh := &mediaHosts{host: h}
	mh.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mh.requests.Add(1)
		if mh.failNext.Add(-1) >= 0 {
			http.Error(w, "failing on purpose", int(mh.failWith.Load()))
			return
		}
		if mh.stall.Load() {
			w.Header().Set("Content-Length", "4122")
			_, _ = w.Write(make([]byte, 2000))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(mh.srv.Close)
	h.SetHosts([]string{mh.hostPort()})
	return mh
}

func (mh *mediaHosts) hostPort() string {
	u, _ := url.Parse(mh.srv.URL)
	return u.Host
}

func (mh *mediaHosts) mediaConn(context.Context) (interop.MediaConn, error) {
	mh.conns.Add(1)
	if mh.connErrs.Add(-1) >= 0 {
		return interop.MediaConn{}, mh.connErr
	}
	auth, ttl, hosts := mh.host.MediaConn(jid.Interop(7, "491701110001"))
	if auth == "" {
		return interop.MediaConn{}, errors.New("no media_conn")
	}
	return interop.MediaConn{Auth: auth, TTL: ttl, Hosts: hosts, FetchedAt: time.Now()}, nil
}

// upload encrypts plain as a Meta user's client would and returns the message's view.
func (mh *mediaHosts) upload(t *testing.T, plain []byte, typ mediacrypt.MediaType) *msgconv.IncomingMedia {
	t.Helper()
	key, err := mediacrypt.NewMediaKey()
	if err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	res, err := mediacrypt.Encrypt(&blob, bytes.NewReader(plain), key, typ)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := mh.host.Upload(context.Background(), &blob)
	if err != nil {
		t.Fatal(err)
	}
	return &msgconv.IncomingMedia{Type: typ, DirectPath: dp, URL: mh.host.URL(dp), MediaKey: key,
		FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256, FileLength: res.FileLength,
		Mimetype: "application/octet-stream", FileName: "file.bin"}
}

func (mh *mediaHosts) fetcher(t *testing.T, cache *mediaConnCache, limit int64) *mediaFetcher {
	return &mediaFetcher{
		conns: cache, fetchConn: mh.mediaConn, client: mediaHTTPClient(), scheme: "http",
		maxBytes: func(string) int64 { return limit }, tempDir: t.TempDir(),
		attempts: 3, backoff: time.Millisecond, now: time.Now, idleTimeout: 100 * time.Millisecond,
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Every way a blob from Meta can be wrong is refused with a reason the receiver can
// read, and nothing is left in the temporary folder; what is right arrives byte for
// byte, fetched only from the hosts media_conn named.
func TestMediaFetchRefusals(t *testing.T) {
	// stranger counts requests that went where media_conn did not point.
	var strayed atomic.Int32
	stranger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		strayed.Add(1)
		http.Error(w, "not Meta", http.StatusTeapot)
	}))
	defer stranger.Close()

	cases := []struct {
		name string
		// prepare changes the message or the hosts before the download.
		prepare func(t *testing.T, mh *mediaHosts, m *msgconv.IncomingMedia, cache *mediaConnCache)
		limit   int64
		reason  string // "" means success
		err     error
		// requests is how many requests the hosts should see; -1 means any.
		requests int32
		conns    int32 // media_conn fetches; -1 means any
	}{
		{name: "verified", requests: 1, conns: 1},
		{name: "wrong encrypted hash", prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.FileEncSHA256 = bytes.Repeat([]byte{9}, 32)
		}, reason: "does not match its checksum (encrypted SHA-256)", err: mediacrypt.ErrEncHashMismatch, requests: 1, conns: 1},
		{name: "bad MAC", prepare: func(_ *testing.T, mh *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.host.SetFault(m.DirectPath, media.FaultCorrupt)
		}, reason: "failed its integrity check (MAC)", err: mediacrypt.ErrBadMAC, requests: 1, conns: 1},
		{name: "wrong plaintext hash", prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.FileSHA256 = bytes.Repeat([]byte{9}, 32)
		}, reason: "decrypted file does not match its checksum (SHA-256)", err: mediacrypt.ErrFileHashMismatch, requests: 1, conns: 1},
		{name: "blob one byte short", prepare: func(_ *testing.T, mh *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.host.SetFault(m.DirectPath, media.FaultTruncate)
		}, reason: "does not have the size the message announced", requests: 1, conns: 1},
		{name: "blob longer than announced", prepare: func(_ *testing.T, mh *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.host.SetFault(m.DirectPath, media.FaultExtend)
		}, reason: "does not have the size the message announced", err: mediacrypt.ErrFileLengthMismatch, requests: 1, conns: 1},
		{name: "announced over the limit: refused before any download", limit: 2048,
			reason: "it is 4 KiB, over this bridge's limit of 2 KiB for document files", requests: 0, conns: 0},
		{name: "unannounced and over the limit: refused while streaming", limit: 1000, prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.FileLength = 0
		}, reason: "over this bridge's limit of 1000 bytes", err: mediacrypt.ErrTooLarge, requests: 1, conns: 1},
		{name: "url on a host not in media_conn, no directPath", prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.URL, m.DirectPath = stranger.URL+m.DirectPath, ""
		}, reason: "points to a server that is not one of Meta's media hosts", requests: 0, conns: 1},
		{name: "url on a host not in media_conn is ignored for the directPath", prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.URL = stranger.URL + m.DirectPath
		}, requests: 1, conns: 1},
		{name: "only a url, on a media_conn host", prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.DirectPath = ""
		}, requests: 1, conns: 1},
		{name: "directPath naming another host", prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.DirectPath = "//" + strings.TrimPrefix(stranger.URL, "http://") + m.DirectPath
		}, reason: "invalid path", requests: 0, conns: 1},
		{name: "directPath with credentials trick", prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.DirectPath = "@" + strings.TrimPrefix(stranger.URL, "http://") + m.DirectPath
		}, reason: "invalid path", requests: 0, conns: 1},
		{name: "redirect elsewhere is not followed", prepare: func(t *testing.T, mh *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			redirect := httptest.NewServer(http.RedirectHandler(stranger.URL+m.DirectPath, http.StatusFound))
			t.Cleanup(redirect.Close)
			u, _ := url.Parse(redirect.URL)
			mh.host.SetHosts([]string{u.Host})
		}, reason: "refused it (HTTP 302)", requests: 0, conns: 1},
		{name: "5xx then success", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.failWith.Store(http.StatusServiceUnavailable)
			mh.failNext.Store(2)
		}, requests: 3, conns: 1},
		{name: "host down after retries", prepare: func(_ *testing.T, mh *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.host.SetFault(m.DirectPath, media.FaultUnavailable)
		}, reason: "Meta's media hosts kept failing (HTTP 503) (3 attempts)", requests: 3, conns: 1},
		{name: "host unreachable after retries", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.host.SetHosts([]string{"127.0.0.1:1"})
		}, reason: "Meta's media hosts could not be reached (3 attempts)", requests: 0, conns: 1},
		{name: "download stalls", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.stall.Store(true)
		}, reason: "the download from Meta's media hosts kept breaking off (3 attempts)", requests: 3, conns: 1},
		{name: "gone", prepare: func(_ *testing.T, mh *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			if err := mh.host.Delete(context.Background(), m.DirectPath); err != nil {
				panic(err)
			}
		}, reason: "no longer on Meta's media hosts", requests: 1, conns: 1},
		{name: "401 refetches media_conn", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, cache *mediaConnCache) {
			cache.conn = interop.MediaConn{Auth: "revoked-before-its-ttl", TTL: time.Hour, Hosts: mh.host.Hosts(), FetchedAt: time.Now()}
		}, requests: 2, conns: 1},
		{name: "401 twice gives up", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.failWith.Store(http.StatusUnauthorized)
			mh.failNext.Store(10)
		}, reason: "refused the bridge's download credentials", requests: 2, conns: 2},
		{name: "media_conn refused once, then given", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.connErr = &errcode.Error{Code: 503, Text: "service-unavailable"}
			mh.connErrs.Store(1)
		}, requests: 1, conns: 2},
		{name: "media_conn while reconnecting", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.connErr = interop.ErrNotConnected
			mh.connErrs.Store(2)
		}, requests: 1, conns: 3},
		{name: "media_conn refused for good", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.connErr = &errcode.Error{Code: 403, Text: "forbidden"}
			mh.connErrs.Store(10)
		}, reason: "could not get download credentials from Meta", requests: 0, conns: 1},
		{name: "media_conn never comes", prepare: func(_ *testing.T, mh *mediaHosts, _ *msgconv.IncomingMedia, _ *mediaConnCache) {
			mh.connErr = interop.ErrIQTimeout
			mh.connErrs.Store(10)
		}, reason: "could not get download credentials from Meta (3 attempts)", requests: 0, conns: 3},
		{name: "missing keys", prepare: func(_ *testing.T, _ *mediaHosts, m *msgconv.IncomingMedia, _ *mediaConnCache) {
			m.MediaKey = nil
		}, reason: "does not carry the keys", requests: 0, conns: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mh := newMediaHosts(t)
			plain := randomBytes(t, 4096)
			m := mh.upload(t, plain, mediacrypt.Document)
			cache := &mediaConnCache{}
			limit := tc.limit
			if limit == 0 {
				limit = 1 << 20
			}
			before := strayed.Load()
			if tc.prepare != nil {
				tc.prepare(t, mh, m, cache)
			}
			f := mh.fetcher(t, cache, limit)
			file, err := f.fetch(context.Background(), m)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				got, rerr := io.ReadAll(file)
				_ = file.Close()
				_ = os.Remove(file.Name())
				if rerr != nil || !bytes.Equal(got, plain) {
					t.Fatalf("got %d bytes (%v), want the %d sent", len(got), rerr, len(plain))
				}
			} else {
				var mf *msgconv.MediaFailure
				if !errors.As(err, &mf) || !strings.Contains(mf.Reason, tc.reason) {
					t.Fatalf("error %v, want a failure saying %q", err, tc.reason)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Errorf("error %v, want %v", err, tc.err)
				}
				if file != nil {
					t.Error("a file came with the failure")
				}
				if strings.Contains(mf.Reason, "Bearer") || strings.Contains(mf.Reason, "http://") {
					t.Errorf("reason leaks details: %q", mf.Reason)
				}
			}
			if n := mh.requests.Load(); tc.requests >= 0 && n != tc.requests {
				t.Errorf("%d requests reached the media hosts, want %d", n, tc.requests)
			}
			if n := mh.conns.Load(); tc.conns >= 0 && n != tc.conns {
				t.Errorf("%d media_conn fetches, want %d", n, tc.conns)
			}
			if n := strayed.Load() - before; n != 0 {
				t.Errorf("%d requests went to a host media_conn did not name", n)
			}
			if left, _ := os.ReadDir(f.tempDir); tc.reason != "" && len(left) != 0 {
				t.Errorf("left %d files in the temporary folder", len(left))
			}
		})
	}
}

// One media_conn serves downloads until its TTL; then it is fetched again.
func TestMediaConnCachedUntilTTL(t *testing.T) {
	mh := newMediaHosts(t)
	cache := &mediaConnCache{}
	f := mh.fetcher(t, cache, 1<<20)
	now := time.Now()
	f.now = func() time.Time { return now }
	for range 3 {
		file, err := f.fetch(context.Background(), mh.upload(t, randomBytes(t, 100), mediacrypt.Image))
		if err != nil {
			t.Fatal(err)
		}
		_ = file.Close()
		_ = os.Remove(file.Name())
	}
	if n := mh.conns.Load(); n != 1 {
		t.Fatalf("%d media_conn fetches for 3 downloads within the TTL", n)
	}
	now = now.Add(media.DefaultTokenTTL + time.Second)
	file, err := f.fetch(context.Background(), mh.upload(t, randomBytes(t, 100), mediacrypt.Image))
	if err != nil {
		t.Fatal(err)
	}
	_ = file.Close()
	_ = os.Remove(file.Name())
	if n := mh.conns.Load(); n != 2 {
		t.Fatalf("%d media_conn fetches after the TTL, want 2", n)
	}
}

// Concurrent downloads share one media_conn fetch.
func TestMediaConnFetchedOnce(t *testing.T) {
	mh := newMediaHosts(t)
	cache := &mediaConnCache{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := cache.get(context.Background(), mh.mediaConn, time.Now(), ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := mh.conns.Load(); n != 1 {
		t.Fatalf("%d media_conn fetches", n)
	}
}

func TestMediaScheme(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:29341/interop/v1": "http",
		"wss://gateway.example/interop":   "https",
		"WS://x":                          "http",
		"":                                "https",
	} {
		if got := mediaScheme(in); got != want {
			t.Errorf("mediaScheme(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 bytes", 1023: "1023 bytes", 1024: "1 KiB", 1536: "1.5 KiB", 16 << 20: "16 MiB", 100 << 20: "100 MiB", 5 << 30: "5 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// fakeIntent is the Matrix side of an upload: it keeps what bridgev2 would upload.
type fakeIntent struct {
	bridgev2.MatrixAPI
	uploaded  []byte
	name      string
	mime      string
	err       error
	encrypt   bool
	thumbnail []byte
}

func (f *fakeIntent) UploadMediaStream(_ context.Context, roomID id.RoomID, size int64, requireFile bool, cb bridgev2.FileStreamCallback) (id.ContentURIString, *event.EncryptedFileInfo, error) {
	if f.err != nil {
		return "", nil, f.err
	}
	if roomID == "" || !requireFile {
		return "", nil, errors.New("upload without a room or a file")
	}
	tmp, err := os.CreateTemp("", "fake-upload-*")
	if err != nil {
		return "", nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	res, err := cb(tmp)
	if err != nil {
		return "", nil, err
	}
	path := tmp.Name()
	if res.ReplacementFile != "" {
		path = res.ReplacementFile
	}
	if f.uploaded, err = os.ReadFile(path); err != nil {
		return "", nil, err
	}
	if int64(len(f.uploaded)) != size {
		return "", nil, errors.New("size differs from the file")
	}
	f.name, f.mime = res.FileName, res.MimeType
	return f.result("file")
}

func (f *fakeIntent) result(name string) (id.ContentURIString, *event.EncryptedFileInfo, error) {
	if f.encrypt {
		return "", &event.EncryptedFileInfo{URL: id.ContentURIString("mxc://test.invalid/encrypted-" + name)}, nil
	}
	return id.ContentURIString("mxc://test.invalid/plain-" + name), nil, nil
}

func (f *fakeIntent) UploadMedia(_ context.Context, roomID id.RoomID, data []byte, fileName, mimeType string) (id.ContentURIString, *event.EncryptedFileInfo, error) {
	if roomID == "" || fileName != "thumbnail.jpg" || mimeType != "image/jpeg" {
		return "", nil, errors.New("unexpected upload")
	}
	f.thumbnail = data
	return f.result("thumbnail")
}

// The verified plaintext goes to bridgev2's upload as a file, byte for byte, and the
// temporary files are gone afterwards; an upload the homeserver refuses is a failure
// with a reason.
func TestMediaUploaderUploads(t *testing.T) {
	mh := newMediaHosts(t)
	plain := randomBytes(t, 70000)
	m := mh.upload(t, plain, mediacrypt.Video)
	m.FileName, m.Mimetype = "clip.mp4", "video/mp4"
	portal := &bridgev2.Portal{Portal: &database.Portal{MXID: "!room:test.invalid"}}
	f := mh.fetcher(t, &mediaConnCache{}, 1<<20)
	for _, encrypt := range []bool{false, true} {
		intent := &fakeIntent{encrypt: encrypt}
		up, err := (&mediaUploader{fetcher: f, portal: portal, intent: intent}).UploadIncoming(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(intent.uploaded, plain) || intent.name != "clip.mp4" || intent.mime != "video/mp4" || up.Size != int64(len(plain)) {
			t.Fatalf("uploaded %d bytes as %q %q, size %d", len(intent.uploaded), intent.name, intent.mime, up.Size)
		}
		if encrypt != (up.File != nil) || encrypt == (up.URL != "") {
			t.Errorf("encrypted %v: url %q file %+v", encrypt, up.URL, up.File)
		}
	}
	if left, _ := os.ReadDir(f.tempDir); len(left) != 0 {
		t.Errorf("left %d files in the temporary folder", len(left))
	}

	// The inline preview is uploaded too when it is a small JPEG, and left out otherwise.
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewRGBA(image.Rect(0, 0, 32, 18)), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		thumb []byte
		want  bool
	}{{"jpeg", jpg.Bytes(), true}, {"not a jpeg", []byte("<svg/>"), false}, {"too big", append(jpg.Bytes(), make([]byte, maxThumbnailBytes)...), false}} {
		for _, encrypt := range []bool{false, true} {
			intent := &fakeIntent{encrypt: encrypt}
			withThumb := *m
			withThumb.Thumbnail = tc.thumb
			up, err := (&mediaUploader{fetcher: f, portal: portal, intent: intent}).UploadIncoming(context.Background(), &withThumb)
			if err != nil {
				t.Fatal(err)
			}
			th := up.Thumbnail
			if !tc.want {
				if th != nil || intent.thumbnail != nil {
					t.Errorf("%s: thumbnail %+v uploaded", tc.name, th)
				}
				continue
			}
			if th == nil || !bytes.Equal(intent.thumbnail, tc.thumb) || th.Width != 32 || th.Height != 18 || th.Size != len(tc.thumb) ||
				th.Mimetype != "image/jpeg" || encrypt != (th.File != nil) || encrypt == (th.URL != "") {
				t.Errorf("%s (encrypted %v): thumbnail %+v", tc.name, encrypt, th)
			}
		}
	}

	_, err := (&mediaUploader{fetcher: f, portal: portal, intent: &fakeIntent{err: bridgev2.ErrMediaTooLarge}}).UploadIncoming(context.Background(), m)
	var mf *msgconv.MediaFailure
	if !errors.As(err, &mf) || !strings.Contains(mf.Reason, "more than the homeserver accepts") {
		t.Fatalf("homeserver refusal: %v", err)
	}
}

// Through a simulated gateway: the login fetches media_conn over its own connection,
// reaches metasim's media hosts with the scheme its ws:// gateway implies, and each
// kind arrives as its Matrix message with the very bytes sent; a corrupted blob is a
// notice, and the next message still arrives.
func TestMediaFromSimulatedMetaUser(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := string(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, loginID, status.StateConnected, "")
	var peer struct{ JID string }
	sb.env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &peer)
	portal := &bridgev2.Portal{Portal: &database.Portal{MXID: "!room:test.invalid"}}

	send := func(kind, caption string, spec map[string]any) (sent struct {
		ID    string
		Media struct {
			DirectPath string `json:"direct_path"`
		}
	}) {
		body := map[string]any{"to": account.String(), "kind": kind, "media": spec}
		if caption != "" {
			body["text"] = caption
		}
		sb.env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", body, &sent)
		return sent
	}
	cases := []struct {
		kind, caption, fileName, mime string
		msgType                       event.MessageType
		voice                         bool
	}{
		{"image", "the view", "image.png", "image/png", event.MsgImage, false},
		{"video", "", "video.mp4", "video/mp4", event.MsgVideo, false},
		{"voice", "", "Voice message.ogg", "audio/ogg; codecs=opus", event.MsgAudio, true},
		{"audio", "", "audio.mp3", "audio/mpeg", event.MsgAudio, false},
		{"document", "the report", "report.pdf", "application/pdf", event.MsgFile, false},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			data := randomBytes(t, 3000)
			spec := map[string]any{"data": base64.StdEncoding.EncodeToString(data), "mimetype": tc.mime, "seconds": 3}
			if tc.kind == "document" {
				spec["file_name"] = tc.fileName
			}
			send(tc.kind, tc.caption, spec)
			msg := sb.q.next(t)
			intent := &fakeIntent{}
			conv, err := msg.ConvertMessage(ctx, portal, intent)
			if err != nil {
				t.Fatal(err)
			}
			c := conv.Parts[0].Content
			if c.MsgType != tc.msgType {
				t.Fatalf("%s: %q %q", tc.kind, c.MsgType, c.Body)
			}
			if !bytes.Equal(intent.uploaded, data) {
				t.Fatalf("uploaded %d bytes, want the %d sent", len(intent.uploaded), len(data))
			}
			wantBody := tc.caption
			if wantBody == "" {
				wantBody = tc.fileName
			}
			if c.Body != wantBody || c.FileName != tc.fileName || c.Info.MimeType != tc.mime || c.Info.Size != len(data) || c.URL == "" {
				t.Errorf("body %q filename %q info %+v url %q", c.Body, c.FileName, c.Info, c.URL)
			}
			if (c.MSC3245Voice != nil) != tc.voice {
				t.Errorf("voice %v", c.MSC3245Voice != nil)
			}
		})
	}

	sent := send("image", "", map[string]any{"width": 8, "height": 8})
	msg := sb.q.next(t)
	sb.env.MustCall(t, 200, "POST", "/v1/media/faults", map[string]any{"fault": "corrupt", "direct_path": sent.Media.DirectPath}, nil)
	conv, err := msg.ConvertMessage(ctx, portal, &fakeIntent{})
	if err != nil {
		t.Fatal(err)
	}
	if c := conv.Parts[0].Content; c.MsgType != event.MsgNotice || !strings.Contains(c.Body, `The image "image.png" could not be bridged`) ||
		!strings.Contains(c.Body, "integrity check") {
		t.Fatalf("corrupt blob: %q %q", c.MsgType, c.Body)
	}
	sb.env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": "still here"}, nil)
	if conv, err := sb.q.next(t).ConvertMessage(ctx, portal, &fakeIntent{}); err != nil || conv.Parts[0].Content.Body != "still here" {
		t.Fatalf("next text: %+v %v", conv, err)
	}
}

// An attachment that did not decrypt at first left a notice; when it arrives again and
// decrypts, the notice is replaced by the attachment itself, fetched and uploaded like
// a first delivery, not by a placeholder.
func TestDecryptedMediaReplacesItsNotice(t *testing.T) {
	ctx := context.Background()
	mh := newMediaHosts(t)
	c := newTestConnector(t, nil)
	account := jid.Interop(12, "491701234571")
	loginID := ids.MakeUserLoginID(ids.WhatsApp, account)
	ic := newInteropClient(c, &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: loginID}}, ids.WhatsApp, account)
	conn, err := mh.mediaConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ic.mediaConn.conn = conn // as if fetched over the connection

	plain := randomBytes(t, 5000)
	m := mh.upload(t, plain, mediacrypt.Image)
	msg := &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Mimetype: proto.String("image/png"), DirectPath: proto.String(m.DirectPath),
		MediaKey: m.MediaKey, FileSha256: m.FileSHA256, FileEncSha256: m.FileEncSHA256, FileLength: proto.Uint64(m.FileLength)}}
	peer := jid.JID{User: "491709876504", Server: jid.ServerGateway}
	key := ids.MakePortalKey(peer, loginID)
	msgID := ids.MakeMessageID(peer, peer, "IMG1")
	evt := &simplevent.Message[*waE2E.Message]{
		EventMeta: simplevent.EventMeta{Type: bridgev2.RemoteEventMessageUpsert, PortalKey: key,
			Sender: bridgev2.EventSender{Sender: ids.MakeUserID(peer)}, Timestamp: time.Now()},
		Data: msg, ID: msgID,
	}
	notice := &database.Message{ID: msgID, MXID: "$notice", Room: key, SenderID: ids.MakeUserID(peer),
		Metadata: &MessageMetadata{Undecryptable: true}}
	portal := &bridgev2.Portal{Portal: &database.Portal{PortalKey: key, MXID: "!room:test.invalid"}}
	res, err := ic.replaceNotice(evt, msgconv.MetaInfo{Chat: peer, Sender: peer})(ctx, portal, nil, []*database.Message{notice}, msg)
	if err != nil || len(res.SubEvents) != 1 {
		t.Fatalf("upsert over the notice: %+v, %v", res, err)
	}
	intent := &fakeIntent{}
	converted, err := res.SubEvents[0].(bridgev2.RemoteEdit).ConvertEdit(ctx, portal, intent, []*database.Message{notice})
	if err != nil || len(converted.ModifiedParts) != 1 {
		t.Fatalf("edit %+v, %v", converted, err)
	}
	if c := converted.ModifiedParts[0].Content; c.MsgType != event.MsgImage || c.URL == "" || !bytes.Equal(intent.uploaded, plain) {
		t.Fatalf("notice replaced by %s %q (uploaded %d bytes)", c.MsgType, c.Body, len(intent.uploaded))
	}
}
