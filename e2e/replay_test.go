//go:build synapse

package e2e

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// A file that bridgev2 itself refuses (over the room's size limit, before the
// connector sees it) counts as handled: a restart does not replay it and refuse it
// again.
func TestSynapseRefusedEventNotReplayed(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		o.BridgeConfig = map[string]any{"network.media.max_size_mib.image": 1}
	})
	c := e.openChat("+491709990009", "+491709990010")
	big := make([]byte, 2<<20)
	up, err := e.alice.Client.UploadBytesWithName(e.ctx, big, "image/png", "big.png")
	e.must(err)
	resp, err := e.alice.Client.SendMessageEvent(e.ctx, c.room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "big.png", URL: up.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "image/png", Size: len(big)},
	})
	e.must(err)
	failedStatus := func(evt *event.Event) bool {
		if evt.RoomID != c.room || evt.Type != event.BeeperMessageStatus {
			return false
		}
		st, ok := evt.Content.Parsed.(*event.BeeperMessageStatusEventContent)
		return ok && st.RelatesTo.EventID == resp.EventID && st.Status != event.MessageStatusSuccess
	}
	_, err = e.alice.WaitEvent(e.ctx, 30*time.Second, "the refusal of the big image", failedStatus)
	e.must(err)

	e.st.Bridge.Stop()
	e.must(e.st.Bridge.Start(e.ctx))
	// Anything replayed comes before new events: once this text is through, a replay
	// of the image would have happened.
	_, err = e.alice.SendText(e.ctx, c.room, "after the restart")
	e.must(err)
	_, err = c.peer.WaitInbox(e.ctx, 30*time.Second, "the text after the restart", url.Values{"kind": {"text"}}, inboxText("after the restart"))
	e.must(err)
	time.Sleep(time.Second)
	if n := len(e.alice.Events(failedStatus)); n != 1 {
		t.Fatalf("the big image was refused %d times, want once (it was replayed after the restart)", n)
	}
}
