package simuser

import (
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// BenchmarkRoundTrip measures one message from a simulated user to another through
// the gateway until it is decrypted and in the receiver's inbox (SQLite for the
// gateway and the inbox; Signal state in SQLite or in memory), and with 64 KiB of
// real media fetched and verified.
func BenchmarkRoundTrip(b *testing.B) {
	for _, c := range []struct {
		name    string
		memory  bool
		content Content
	}{
		{"text/sqlstore", false, Content{Kind: ContentText, Text: "hello"}},
		{"text/memstore", true, Content{Kind: ContentText, Text: "hello"}},
		{"document64KiB/sqlstore", false, Content{Kind: ContentDocument, Media: &MediaSpec{Size: 64 << 10}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnvOn(b, sqltest.SQLite(b), c.memory)
			alice := e.user("491701111111", 1)
			bob := e.user("491702222222", 1)
			e.waitMsg(bob, e.send(alice, bob, Content{Kind: ContentText, Text: "warm up"}).ID)
			e.waitMsg(alice, e.send(bob, alice, Content{Kind: ContentText, Text: "warm up"}).ID)
			for b.Loop() {
				it := e.waitMsg(bob, e.send(alice, bob, c.content).ID)
				if it.Data.Media != nil && it.Data.Media.Status != MediaOK {
					b.Fatalf("media %+v", it.Data.Media)
				}
			}
		})
	}
}
