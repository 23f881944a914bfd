package control_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// BenchmarkControlSend measures one text from a simulated user, asked for over the
// control API, until the third party decrypted it: HTTP, Signal encryption, the
// gateway's routing and queue, WebSocket+Noise, decryption.
func BenchmarkControlSend(b *testing.B) {
	env := simtest.Start(b)
	u := jidOf(createUserB(b, env))
	tp := env.StartThirdParty(b, simtest.ThirdPartyOptions{Number: "491701234567", Store: memStore(b, "491701234567")})
	body := map[string]any{"to": tp.JID.String(), "kind": "text", "text": "benchmark"}
	b.ResetTimer()
	for b.Loop() {
		env.MustCall(b, 200, "POST", "/v1/users/"+u+"/messages", body, nil)
		tp.Next(b, waitLong)
	}
}

// BenchmarkInboxReceive measures one text from the third party until the simulated
// user's inbox shows it through a long-poll. The third party's rate limits (30 per
// 10 s) are lifted, or they would be what is measured.
func BenchmarkInboxReceive(b *testing.B) {
	env := simtest.Start(b, func(c *metasim.Config) {
		c.Networks.WhatsApp.Limits.BurstMessages = 1 << 30
		c.Networks.WhatsApp.Limits.HourlyMessages = 1 << 30
	})
	u := createUserB(b, env)
	tp := env.StartThirdParty(b, simtest.ThirdPartyOptions{Number: "491701234567", Store: memStore(b, "491701234567")})
	msg := &waE2E.Message{Conversation: proto.String("benchmark")}
	var since int64
	b.ResetTimer()
	for b.Loop() {
		if _, err := tp.Acc.SendMessage(context.Background(), u.JID, "", msg, interop.SendOptions{}); err != nil {
			b.Fatal(err)
		}
		var in inbox
		for len(in.Items) == 0 {
			env.MustCall(b, 200, "GET", "/v1/users/"+u.JID.String()+"/inbox?kind=text&wait=10s&since="+itoa(since), nil, &in)
		}
		since = in.Next
	}
}
