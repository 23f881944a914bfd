package astxn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"go.mau.fi/util/exhttp"
	"maunium.net/go/mautrix/appservice"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// BenchmarkTransaction measures one 10-event transaction through the middleware into
// the appservice on SQLite, against the appservice alone: the price of the window.
func BenchmarkTransaction(b *testing.B) {
	for _, persist := range []bool{false, true} {
		b.Run(fmt.Sprintf("persist=%v", persist), func(b *testing.B) {
			as := newAS()
			handler := http.Handler(as.Router)
			if persist {
				tr := New(openDB(b, sqltest.SQLite(b)))
				handler = exhttp.ApplyMiddleware(as.Router, tr.Middleware(as))
			}
			stop := consume(as)
			defer close(stop)
			b.ResetTimer()
			for i := range b.N {
				events := make([]json.RawMessage, 10)
				for j := range events {
					events[j] = pdu(fmt.Sprintf("$e%d-%d", i, j), "m.room.message")
				}
				req := httptest.NewRequest(http.MethodPut, txnPathPrefix+strconv.Itoa(i), bytes.NewReader(txnBody(events)))
				req.Header.Set("Authorization", "Bearer "+hsToken)
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

func consume(as *appservice.AppService) chan struct{} {
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-as.Events:
			case <-stop:
				return
			}
		}
	}()
	return stop
}
