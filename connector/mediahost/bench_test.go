package mediahost

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// zeros is an endless reader that costs nothing, so the benchmarks measure the host.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// BenchmarkHost stores a 20 MiB blob (file written, synced, renamed; two row writes).
func BenchmarkHost(b *testing.B) {
	const size = 20 << 20
	f := newFixture(b, sqltest.SQLite(b))
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.h.Host(context.Background(), "whatsapp", login, "m", io.LimitReader(zeros{}, size)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServe serves a 20 MiB blob through the callbacks handler, signature check
// included.
func BenchmarkServe(b *testing.B) {
	const size = 20 << 20
	f := newFixture(b, sqltest.SQLite(b))
	hb, err := f.h.Host(context.Background(), "whatsapp", login, "m", io.LimitReader(zeros{}, size))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("GET", hb.DirectPath, nil)
		callback.SignMediaFetch(r, waSecret, f.clk.Now())
		w := &countingWriter{header: http.Header{}}
		f.cb.ServeHTTP(w, r)
		if w.status != 200 || w.n != size {
			b.Fatalf("status %d, %d bytes", w.status, w.n)
		}
	}
}

// countingWriter is a ResponseWriter that keeps no body, so serving stays streaming.
type countingWriter struct {
	header http.Header
	status int
	n      int64
}

func (w *countingWriter) Header() http.Header    { return w.header }
func (w *countingWriter) WriteHeader(status int) { w.status = status }
func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	w.n += int64(len(p))
	return len(p), nil
}
