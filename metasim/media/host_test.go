package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// blobBackends are the two blob stores every host test runs on.
func blobBackends(t *testing.T) map[string]HostConfig {
	return map[string]HostConfig{"memory": {}, "disk": {Dir: t.TempDir()}}
}

// TestSection7_HostServesBlobsToTokenHolders uploads blobs and downloads them as the
// bridge would: GET {directPath} with the media_conn token, whole and by Range, on
// both blob stores, and checks that the plaintext decrypts byte for byte.
func TestSection7_HostServesBlobsToTokenHolders(t *testing.T) {
	for name, cfg := range blobBackends(t) {
		t.Run(name, func(t *testing.T) {
			th := newTestHost(t, cfg)
			enc := encrypt(t, 5000, mediacrypt.Image)
			path := th.upload(t, enc.blob)
			if !strings.HasPrefix(path, directPathPrefix) || len(path) != len(directPathOf(strings.Repeat("0", 64))) {
				t.Fatalf("directPath %q has the wrong shape", path)
			}
			if other := th.upload(t, enc.blob); other == path {
				t.Fatal("two uploads got the same directPath")
			}
			if got, want := th.h.URL(path), "https://"+strings.TrimPrefix(th.srv.URL, "http://")+path; got != want {
				t.Fatalf("URL(%q) = %q", path, got)
			}
			auth := "Bearer " + th.token(t)

			code, body, hdr := th.get(t, http.MethodGet, path, auth, nil)
			if code != http.StatusOK || !bytes.Equal(body, enc.blob) {
				t.Fatalf("GET: %d, %d bytes (want 200, %d bytes)", code, len(body), len(enc.blob))
			}
			if hdr.Get("Accept-Ranges") != "bytes" {
				t.Fatalf("Accept-Ranges = %q", hdr.Get("Accept-Ranges"))
			}
			plain, err := mediacrypt.DecryptBytes(body, enc.exp)
			if err != nil || !bytes.Equal(plain, enc.plain) {
				t.Fatalf("downloaded blob does not decrypt to the plaintext: %v", err)
			}

			ranges := []struct {
				header string
				from   int
				to     int // exclusive
			}{
				{"bytes=0-99", 0, 100},
				{"bytes=100-", 100, len(enc.blob)},
				{"bytes=-10", len(enc.blob) - 10, len(enc.blob)},
				{"bytes=4000-4015", 4000, 4016},
			}
			for _, r := range ranges {
				code, body, _ := th.get(t, http.MethodGet, path, auth, map[string]string{"Range": r.header})
				if code != http.StatusPartialContent || !bytes.Equal(body, enc.blob[r.from:r.to]) {
					t.Fatalf("Range %s: %d, %d bytes, want 206 and bytes [%d:%d]", r.header, code, len(body), r.from, r.to)
				}
			}
			if code, _, _ := th.get(t, http.MethodGet, path, auth, map[string]string{"Range": "bytes=999999-"}); code != http.StatusRequestedRangeNotSatisfiable {
				t.Fatalf("unsatisfiable Range: %d, want 416", code)
			}
			code, body, hdr = th.get(t, http.MethodHead, path, auth, nil)
			if code != http.StatusOK || len(body) != 0 || hdr.Get("Content-Length") != "5018" {
				t.Fatalf("HEAD: %d, Content-Length %q", code, hdr.Get("Content-Length"))
			}

			// In-process reads see the same blob.
			rc, size, err := th.h.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			_ = rc.Close()
			if size != int64(len(enc.blob)) || !bytes.Equal(got, enc.blob) {
				t.Fatalf("Open: %d bytes (size %d), want the blob", len(got), size)
			}

			if err := th.h.Delete(context.Background(), path); err != nil {
				t.Fatal(err)
			}
			if code, _, _ := th.get(t, http.MethodGet, path, auth, nil); code != http.StatusNotFound {
				t.Fatalf("GET after Delete: %d, want 404", code)
			}
			if _, _, err := th.h.Open(context.Background(), path); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Open after Delete: %v", err)
			}
		})
	}
}

// TestSection7_HostRefusesWithoutValidToken checks every way a request can lack a
// valid token: each gets 401 and learns nothing about the blob.
func TestSection7_HostRefusesWithoutValidToken(t *testing.T) {
	th := newTestHost(t, HostConfig{TokenTTL: time.Minute})
	path := th.upload(t, encrypt(t, 100, mediacrypt.Video).blob)
	valid := th.token(t)
	expiring := th.token(t)

	cases := []struct {
		name    string
		authz   string
		advance time.Duration
		path    string
		method  string
		want    int
	}{
		{name: "valid", authz: "Bearer " + valid, want: 200},
		{name: "lower case scheme", authz: "bearer " + valid, want: 200},
		{name: "no header", want: 401},
		{name: "basic auth", authz: "Basic " + valid, want: 401},
		{name: "bearer without token", authz: "Bearer ", want: 401},
		{name: "unknown token", authz: "Bearer " + strings.Repeat("A", len(valid)), want: 401},
		{name: "token of another path", authz: "Bearer " + path, want: 401},
		{name: "unknown path, no token", authz: "", path: directPathOf(strings.Repeat("a", 64)), want: 401},
		{name: "unknown path", authz: "Bearer " + valid, path: directPathOf(strings.Repeat("a", 64)), want: 404},
		{name: "path outside the store", authz: "Bearer " + valid, path: "/../../etc/passwd", want: 404},
		{name: "post", authz: "Bearer " + valid, method: http.MethodPost, want: 405},
		{name: "expired token", authz: "Bearer " + expiring, advance: time.Minute, want: 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			th.clk.Advance(c.advance)
			p, m := c.path, c.method
			if p == "" {
				p = path
			}
			if m == "" {
				m = http.MethodGet
			}
			code, body, hdr := th.get(t, m, p, c.authz, nil)
			if code != c.want {
				t.Fatalf("got %d, want %d", code, c.want)
			}
			if code == 401 && (hdr.Get("WWW-Authenticate") == "" || bytes.Contains(body, []byte(valid))) {
				t.Fatalf("401 without WWW-Authenticate or echoing the token")
			}
		})
	}
}

// TestSection7_HostFaults serves each fault and checks the receiver's verification
// refuses it with the right error, for one blob and for all.
func TestSection7_HostFaults(t *testing.T) {
	for name, cfg := range blobBackends(t) {
		t.Run(name, func(t *testing.T) {
			th := newTestHost(t, cfg)
			enc := encrypt(t, 1000, mediacrypt.Audio)
			path := th.upload(t, enc.blob)
			other := th.upload(t, enc.blob)
			auth := "Bearer " + th.token(t)
			cases := []struct {
				fault   Fault
				status  int
				size    int
				wantErr error
			}{
				{FaultCorrupt, 200, len(enc.blob), mediacrypt.ErrBadMAC},
				{FaultTruncate, 200, len(enc.blob) - 1, mediacrypt.ErrBadLength},
				{FaultExtend, 200, len(enc.blob) + extendBy, mediacrypt.ErrFileLengthMismatch},
				{FaultUnavailable, 503, 0, nil},
			}
			for _, c := range cases {
				th.h.SetFault(path, c.fault)
				code, body, _ := th.get(t, http.MethodGet, path, auth, nil)
				if code != c.status {
					t.Fatalf("%s: status %d, want %d", c.fault, code, c.status)
				}
				rc, _, err := th.h.Open(context.Background(), path)
				if c.fault == FaultUnavailable {
					wantErr(t, err, ErrUnavailable)
					if code, _, _ := th.get(t, http.MethodGet, path, "", nil); code != 503 {
						t.Fatalf("unavailable host answered %d without a token, want 503", code)
					}
					continue
				}
				inproc, _ := io.ReadAll(rc)
				_ = rc.Close()
				if len(body) != c.size || !bytes.Equal(inproc, body) {
					t.Fatalf("%s: served %d bytes (in-process %d), want %d", c.fault, len(body), len(inproc), c.size)
				}
				if _, err := mediacrypt.DecryptBytes(body, enc.exp); !errors.Is(err, c.wantErr) {
					t.Fatalf("%s: decrypt gave %v, want %v", c.fault, err, c.wantErr)
				}
				noLen := enc.exp
				noLen.FileLength = 0
				if _, err := mediacrypt.DecryptBytes(body, noLen); err == nil {
					t.Fatalf("%s: blob decrypted without a declared length", c.fault)
				}
				// The other blob is untouched by a fault for this one.
				if code, body, _ := th.get(t, http.MethodGet, other, auth, nil); code != 200 || !bytes.Equal(body, enc.blob) {
					t.Fatalf("%s leaked to another blob", c.fault)
				}
			}
			th.h.SetFault(path, FaultNone)
			th.h.SetFault("", FaultCorrupt)
			if _, body, _ := th.get(t, http.MethodGet, other, auth, nil); bytes.Equal(body, enc.blob) {
				t.Fatal("a fault for every blob did not apply")
			}
			th.h.ClearFaults()
			if _, body, _ := th.get(t, http.MethodGet, path, auth, nil); !bytes.Equal(body, enc.blob) {
				t.Fatal("ClearFaults left a fault")
			}
		})
	}
}

func TestFaultNames(t *testing.T) {
	for f, name := range faultNames {
		got, err := ParseFault(name)
		if err != nil || got != f {
			t.Fatalf("ParseFault(%q) = %v, %v", name, got, err)
		}
		text, err := f.MarshalText()
		if err != nil || string(text) != name {
			t.Fatalf("MarshalText(%v) = %q, %v", f, text, err)
		}
	}
	var f Fault
	if err := f.UnmarshalText([]byte("melt")); err == nil {
		t.Fatal("an unknown fault name was accepted")
	}
	if _, err := Fault(99).MarshalText(); err == nil {
		t.Fatal("an unknown fault was marshalled")
	}
}

// TestHostUploadLimit refuses an upload over the limit and leaves nothing behind.
func TestHostUploadLimit(t *testing.T) {
	for name, cfg := range blobBackends(t) {
		t.Run(name, func(t *testing.T) {
			cfg.MaxBlobSize = 1024
			th := newTestHost(t, cfg)
			if _, err := th.h.Upload(context.Background(), bytes.NewReader(make([]byte, 1025))); !errors.Is(err, ErrBlobTooLarge) {
				t.Fatalf("upload over the limit: %v", err)
			}
			if _, err := th.h.Upload(context.Background(), bytes.NewReader(make([]byte, 1024))); err != nil {
				t.Fatalf("upload at the limit: %v", err)
			}
			if cfg.Dir != "" {
				entries, err := os.ReadDir(cfg.Dir)
				if err != nil || len(entries) != 1 || strings.HasPrefix(entries[0].Name(), ".") {
					t.Fatalf("blob directory holds %v (%v), want the one blob", entries, err)
				}
			}
		})
	}
}

// TestSection7_HostTokensOutliveRestart persists tokens: a Host reopened on the same
// database accepts a token issued before, until its TTL ends, on both engines.
func TestSection7_HostTokensOutliveRestart(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		clk := newClock()
		dir := t.TempDir()
		cfg := HostConfig{Dir: dir, DB: db, Hosts: []string{"mmg.test"}, TokenTTL: time.Hour, Now: clk.Now, Log: zerolog.Nop()}
		h1, err := NewHost(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		path, err := h1.Upload(context.Background(), bytes.NewReader(encrypt(t, 10, mediacrypt.Document).blob))
		if err != nil {
			t.Fatal(err)
		}
		token, ttl, hosts := h1.MediaConn(jid.New("491701111111", jid.ServerGateway))
		if token == "" || ttl != time.Hour || len(hosts) != 1 || hosts[0] != "mmg.test" {
			t.Fatalf("MediaConn: %d-byte auth, %s, %v", len(token), ttl, hosts)
		}
		var stored int
		if err := db.QueryRow(context.Background(), `SELECT COUNT(*) FROM metasim_media_token WHERE token_hash=$1`, hashToken(token)).Scan(&stored); err != nil || stored != 1 {
			t.Fatalf("token not stored by hash: %d %v", stored, err)
		}

		h2, err := NewHost(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := newServer(t, h2)
		if code := status(t, srv+path, "Bearer "+token); code != 200 {
			t.Fatalf("token from before the restart: %d, want 200", code)
		}
		clk.Advance(time.Hour)
		h3, err := NewHost(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv = newServer(t, h3)
		if code := status(t, srv+path, "Bearer "+token); code != 401 {
			t.Fatalf("expired token after a restart: %d, want 401", code)
		}
		// Issuing after the TTL prunes expired tokens.
		h3.MediaConn(jid.New("491701111111", jid.ServerGateway))
		if err := db.QueryRow(context.Background(), `SELECT COUNT(*) FROM metasim_media_token WHERE token_hash=$1`, hashToken(token)).Scan(&stored); err != nil || stored != 0 {
			t.Fatalf("expired token not pruned: %d %v", stored, err)
		}
	})
}

// TestHostWithoutHosts answers media_conn with nothing (the gateway then says 503).
func TestHostWithoutHosts(t *testing.T) {
	h, err := NewHost(context.Background(), HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if auth, _, _ := h.MediaConn(jid.New("1", jid.ServerGateway)); auth != "" {
		t.Fatal("media_conn without hosts handed out a token")
	}
	if h.URL("/x") != "" {
		t.Fatal("URL without hosts")
	}
	if _, err := NewHost(context.Background(), HostConfig{TokenTTL: time.Millisecond}); err == nil {
		t.Fatal("a sub-second TTL was accepted")
	}
}
