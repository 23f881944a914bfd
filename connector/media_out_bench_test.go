//go:build unix

package connector

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/callbacks"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/mediahost"
	"github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// BenchmarkMediaSend is the bridge's part of sending a file to Meta, without the
// homeserver's own cost: a Go HTTP server plays the homeserver's media repository, and
// the real download (matrixDownload through the appservice client), the encryption,
// the media host (file store and SQLite records) and its HTTP serving run as in the
// bridge. Each file is then fetched through the callbacks handler over loopback HTTP
// and verified and decrypted the way Meta's proxy does (mediacrypt.DecryptToFile).
// It reports prepare-ms (downloading, encrypting and hosting: what the message waits
// for), fetch-ms (the proxy's fetch and decryption), both as MB/s, and cpu-ms, the
// process's CPU time for both (the homeserver's serving included).
func BenchmarkMediaSend(b *testing.B) {
	for _, mib := range []int{1, 20, 100} {
		b.Run(strconv.Itoa(mib)+"MiB", func(b *testing.B) {
			size := int64(mib) << 20
			if mib == 100 {
				size = config.MaxProxyPlaintext
			}
			benchMediaSend(b, size)
		})
	}
}

func benchMediaSend(b *testing.B, size int64) {
	ctx := context.Background()
	file := make([]byte, size)
	if _, err := rand.Read(file); err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/_matrix/client/v1/media/download/hs/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		_, _ = w.Write(file)
	}))
	b.Cleanup(hs.Close)
	client, err := mautrix.NewClient(hs.URL, "@bot:hs", "token")
	if err != nil {
		b.Fatal(err)
	}

	log := zerolog.Nop()
	db := database.New(sqltest.SQLite(b), log)
	if err := db.Upgrade(ctx); err != nil {
		b.Fatal(err)
	}
	store, err := mediahost.NewFileStore(filepath.Join(b.TempDir(), "media"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	secret := []byte("whatsapp-callback-secret-0123456789abcdef")
	cbSrv := httptest.NewUnstartedServer(nil)
	hosting, err := mediahost.New(mediahost.Config{BaseURL: "http://" + cbSrv.Listener.Addr().String(), Store: store, Records: db, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	cb, err := callbacks.New(callbacks.Config{Networks: []callbacks.Network{{Name: "whatsapp", IntegratorID: 7, Secret: secret}},
		Tokens: db, Pusher: benchPusher{}, Media: hosting, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	cbSrv.Config.Handler = cb
	cbSrv.Start()
	b.Cleanup(cbSrv.Close)

	s := &mediaSender{host: hosting, download: matrixDownload(&matrix.ASIntent{Matrix: &appservice.IntentAPI{Client: client}}),
		limits: &config.MediaConfig{}, network: "whatsapp", networkName: "WhatsApp", loginID: "whatsapp:7-491701234567",
		tempDir: b.TempDir()}
	content := &event.MessageEventContent{MsgType: event.MsgFile, Body: "a.bin", URL: id.ContentURIString("mxc://hs/a"),
		Info: &event.FileInfo{MimeType: "application/octet-stream", Size: int(size)}}
	plainDir := b.TempDir()

	var prepare, fetch time.Duration
	i := 0
	cpu0 := processCPU(b)
	b.SetBytes(size)
	for b.Loop() {
		i++
		stanza := fmt.Sprintf("S%d", i)
		t0 := time.Now()
		media, err := s.prepare(ctx, content, stanza)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, media.URL, nil)
		if err != nil {
			b.Fatal(err)
		}
		callback.SignMediaFetch(req, secret, time.Now())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("fetch: %s", resp.Status)
		}
		f, err := mediacrypt.DecryptToFile(plainDir, resp.Body, mediacrypt.Expected{MediaKey: media.MediaKey, Type: mediacrypt.Document,
			FileSHA256: media.FileSHA256, FileEncSHA256: media.FileEncSHA256, FileLength: media.FileLength})
		_ = resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		_ = f.Close()
		_ = os.Remove(f.Name())
		prepare += t1.Sub(t0)
		fetch += t2.Sub(t1)
		if err := hosting.Forget(ctx, s.loginID, stanza); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(i)
	b.ReportMetric(float64((processCPU(b)-cpu0).Milliseconds())/n, "cpu-ms")
	b.ReportMetric(float64(prepare.Milliseconds())/n, "prepare-ms")
	b.ReportMetric(float64(fetch.Milliseconds())/n, "fetch-ms")
	b.ReportMetric(float64(size)/1e6/(prepare.Seconds()/n), "prepare-MB/s")
	b.ReportMetric(float64(size)/1e6/(fetch.Seconds()/n), "fetch-MB/s")
}

// processCPU is the user and system CPU time the process has used: on a shared
// machine a steadier measure of the work than the wall clock.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type benchPusher struct{}

func (benchPusher) Push(context.Context, string, jid.JID, int) error { return nil }
