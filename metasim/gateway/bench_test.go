package gateway

import (
	"strconv"
	"testing"

	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// BenchmarkRoute measures one 1:1 message through the gateway: a third-party account
// sends over WebSocket+Noise, the gateway checks it (keys, opt-in, rate limits,
// phash), queues it for the Meta device, acks the sender, delivers it in-process and
// removes it on the device's ack. Per engine.
func BenchmarkRoute(b *testing.B) {
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) { benchRoute(b, be.Open(b)) })
	}
}

func benchRoute(b *testing.B, db *dbutil.Database) {
	e := newEnvOn(b, db, func(c *Config) { c.Limits.BurstMessages, c.Limits.HourlyMessages = 1<<30, 1<<30 })
	m, mc := e.metaUser("491701111111", UserOptions{})
	a := e.account("491701234567")
	b.ResetTimer()
	for i := range b.N {
		id := "B" + strconv.Itoa(i)
		if ack := a.sendMessage(textTo(id, m, m)); ackError(ack) != "" {
			b.Fatalf("refused: %v", ack.Attrs)
		}
		mc.ack(mc.waitFor("message", isMessage(id)))
	}
}
