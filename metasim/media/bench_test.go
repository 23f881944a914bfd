package media

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
)

// BenchmarkHostServe measures a token-checked download of a 1 MiB blob from disk.
func BenchmarkHostServe(b *testing.B) {
	th := newTestHost(b, HostConfig{Dir: b.TempDir()})
	enc := encrypt(b, 1<<20, mediacrypt.Video)
	path := th.upload(b, enc.blob)
	auth := "Bearer " + th.token(b)
	b.SetBytes(int64(len(enc.blob)))
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, th.srv.URL+path, nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || n != int64(len(enc.blob)) {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}

// BenchmarkProxyFetch measures a signed fetch and full verification of a 1 MiB blob.
func BenchmarkProxyFetch(b *testing.B) {
	p := newProvider(b)
	enc := encrypt(b, 1<<20, mediacrypt.Image)
	p.blobs["/blob"] = enc.blob
	proxy := NewProxy(ProxyConfig{TempDir: b.TempDir()})
	b.SetBytes(int64(len(enc.plain)))
	b.ResetTimer()
	for b.Loop() {
		f, err := proxy.Fetch(context.Background(), p.integrator(), p.srv.URL+"/blob", enc.exp)
		if err != nil {
			b.Fatal(err)
		}
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
}
