//go:build synapse

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// With direct_media enabled, an image from a Meta user arrives as an mxc:// URI of the
// bridge's own media server, and nothing is downloaded until someone asks: the Matrix
// user's download goes to Synapse, which fetches the file over federation from the
// bridge, which fetches and verifies it from Meta's media hosts. What the hosts
// corrupt is refused at that point, and the homeserver serves nothing of it.
func TestSynapseDirectMedia(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) { o.DirectMedia = true })
	c := e.openChat("+491701110051", "+491702220052")
	image := mediaKinds[0]

	data := randomData(t, 150000)
	mark := e.alice.Mark()
	c.sendMedia(image, data, 0)
	_, content := c.waitMedia(e.alice, mark, event.MsgImage)
	uri, err := content.URL.Parse()
	e.must(err)
	if uri.Homeserver != e.st.MediaServer || content.File != nil {
		t.Fatalf("image bridged as %q (file %v), want a URI of the bridge's media server %s", content.URL, content.File, e.st.MediaServer)
	}
	if content.Info == nil || content.Info.Size != len(data) || content.Info.MimeType != image.mimetype || content.Body != image.caption {
		t.Errorf("body %q info %+v", content.Body, content.Info)
	}
	start := time.Now()
	if got := download(t, e.alice, content); !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes, not the %d sent", len(got), len(data))
	}
	t.Logf("first download through Synapse, federation and Meta's hosts in %s", time.Since(start).Round(time.Millisecond))

	// A 20 MiB video streams through verified temporary files: the bridge's memory does
	// not grow with it.
	var sent struct {
		Media struct {
			SHA256 string `json:"sha256"`
		} `json:"media"`
	}
	peakBefore, err := e.st.Bridge.PeakRSS()
	e.must(err)
	mark = e.alice.Mark()
	e.must(e.st.Sim.Call(e.ctx, "POST", "/v1/users/"+c.peer.JID+"/messages", map[string]any{
		"to": c.account, "kind": "video", "media": map[string]any{"size": 20 << 20, "mimetype": "video/mp4", "seconds": 60},
	}, &sent))
	_, content = c.waitMedia(e.alice, mark, event.MsgVideo)
	start = time.Now()
	video := download(t, e.alice, content)
	took := time.Since(start)
	sum := sha256.Sum256(video)
	if len(video) != 20<<20 || hex.EncodeToString(sum[:]) != sent.Media.SHA256 {
		t.Fatalf("downloaded %d bytes with SHA-256 %x, sent 20 MiB with %s", len(video), sum, sent.Media.SHA256)
	}
	peakAfter, err := e.st.Bridge.PeakRSS()
	e.must(err)
	if growth := peakAfter - peakBefore; growth > 16<<20 {
		t.Errorf("the bridge's peak memory grew by %d MiB serving a 20 MiB file", growth>>20)
	} else {
		t.Logf("20 MiB video through Synapse, federation and Meta's hosts in %s; the bridge's peak memory grew by %d KiB",
			took.Round(time.Millisecond), growth>>10)
	}

	// Corrupted on Meta's hosts: the message still arrives, since nothing is fetched
	// then, but its download is refused.
	e.must(e.st.Sim.Call(e.ctx, "POST", "/v1/media/faults", map[string]any{"fault": "corrupt"}, nil))
	defer func() { e.must(e.st.Sim.Call(e.ctx, "DELETE", "/v1/media/faults", nil, nil)) }()
	mark = e.alice.Mark()
	c.sendMedia(image, randomData(t, 20000), 0)
	_, content = c.waitMedia(e.alice, mark, event.MsgImage)
	uri, err = content.URL.Parse()
	e.must(err)
	if uri.Homeserver != e.st.MediaServer {
		t.Fatalf("second image bridged as %q", content.URL)
	}
	got, err := e.alice.Client.DownloadBytes(e.ctx, uri)
	if err == nil {
		t.Fatalf("the corrupted file was served: %d bytes", len(got))
	}
	t.Logf("the homeserver refused the corrupted file: %v", err)
	if log := e.st.Bridge.LogTail(200); !strings.Contains(log, "Failed to fetch direct media") || !strings.Contains(log, "integrity check (MAC)") {
		t.Errorf("the bridge did not log why it refused the file")
	}
}

// Direct media is not used in end-to-bridge encrypted rooms: the file is uploaded
// encrypted as without it, and the homeserver holds only ciphertext.
func TestSynapseDirectMediaEncryptedRoom(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		o.DirectMedia = true
		o.BridgeConfig = map[string]any{"encryption.allow": true, "encryption.default": true, "encryption.require": true}
	})
	alice, err := e.st.Synapse.NewCryptoUser(e.ctx, "directcrypto", t.TempDir())
	e.must(err)
	t.Cleanup(alice.Close)
	c := e.openChatAs(alice, "+491701110053", "+491702220054")
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "the portal's encryption", func(evt *event.Event) bool {
		return evt.RoomID == c.room && evt.Type == event.StateEncryption
	})
	e.must(err)

	data := randomData(t, 30000)
	mark := alice.Mark()
	c.sendMedia(mediaKinds[0], data, 0)
	evt, err := alice.WaitEventAfter(e.ctx, mark, 60*time.Second, "the image", func(evt *event.Event) bool {
		return kit.IsMessage(c.room, "", "")(evt) && evt.Content.AsMessage().MsgType == event.MsgImage
	})
	e.must(err)
	content := evt.Content.AsMessage()
	if !evt.Mautrix.WasEncrypted || content.File == nil || content.URL != "" {
		t.Fatalf("encrypted %v, file %+v, url %q", evt.Mautrix.WasEncrypted, content.File, content.URL)
	}
	uri, err := content.File.URL.Parse()
	e.must(err)
	if uri.Homeserver != kit.ServerName {
		t.Fatalf("the encrypted file is at %s, not uploaded to the homeserver", uri.Homeserver)
	}
	if got := download(t, alice, content); !bytes.Equal(got, data) {
		t.Fatalf("decrypted %d bytes, not the %d sent", len(got), len(data))
	}
}
