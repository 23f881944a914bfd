package callbacks

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
)

// BenchmarkAuth is one auth callback end to end on SQLite: both secrets tried (the
// Messenger one verifies), the token hashed and looked up.
func BenchmarkAuth(b *testing.B) {
	f := newFixture(b)
	body := authBody(msgrAccount, f.mTok)
	ts := strconv.FormatInt(f.now.Unix(), 10)
	sig := callback.Sign(msgrSecret, ts, []byte(body))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", AuthPath, strings.NewReader(body))
		r.Header.Set(callback.HeaderTimestamp, ts)
		r.Header.Set(callback.HeaderSignature, sig)
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
