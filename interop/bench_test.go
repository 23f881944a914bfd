package interop

import (
	"context"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// BenchmarkSendIQ measures one iq round trip through the client over the in-memory
// connection, codec included, with a gateway that answers at once.
func BenchmarkSendIQ(b *testing.B) {
	tc := startClient(b, fastConfig())
	gw := tc.connect(b)
	go func() {
		for {
			select {
			case frame := <-gw.conn.fromClient:
				req, err := stanza.Unmarshal(frame)
				if err != nil {
					return
				}
				answer, _ := stanza.Marshal(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"id": req.Attr("id"), "type": "result", "from": "s.whatsapp.net"},
					Content: []stanza.Node{{Tag: "count", Attrs: stanza.Attrs{"value": "50"}}}})
				select {
				case gw.conn.toClient <- answer:
				case <-gw.conn.closed:
					return
				}
			case <-gw.conn.closed:
				return
			}
		}
	}()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := tc.PreKeyCount(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
