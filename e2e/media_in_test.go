//go:build synapse

package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// mediaKind is one kind of attachment a Meta user sends, and what should arrive.
type mediaKind struct {
	kind     string // metasim's kind
	caption  string
	fileName string // what the Matrix event names the file
	mimetype string
	msgType  event.MessageType
	voice    bool
}

var mediaKinds = []mediaKind{
	{"image", "the view from here", "image.png", "image/png", event.MsgImage, false},
	{"video", "", "video.mp4", "video/mp4", event.MsgVideo, false},
	{"voice", "", "Voice message.ogg", "audio/ogg; codecs=opus", event.MsgAudio, true},
	{"audio", "", "audio.mp3", "audio/mpeg", event.MsgAudio, false},
	{"document", "the minutes", "minutes.pdf", "application/pdf", event.MsgFile, false},
}

func randomData(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sendMedia has the peer send data as kind, with seconds for timed media.
func (c *chat) sendMedia(k mediaKind, data []byte, seconds int) {
	c.t.Helper()
	spec := map[string]any{"data": base64.StdEncoding.EncodeToString(data), "mimetype": k.mimetype}
	if seconds > 0 {
		spec["seconds"] = seconds
	}
	if k.kind == "document" {
		spec["file_name"] = k.fileName
	}
	body := map[string]any{"to": c.account, "kind": k.kind, "media": spec}
	if k.caption != "" {
		body["text"] = k.caption
	}
	_, err := c.peer.Send(c.ctx, body)
	c.must(err)
}

// waitMedia waits for the ghost's message of msgType after mark.
func (c *chat) waitMedia(u *kit.User, mark int, msgType event.MessageType) (*event.Event, *event.MessageEventContent) {
	c.t.Helper()
	evt, err := u.WaitEventAfter(c.ctx, mark, 60*time.Second, string(msgType)+" from the ghost", func(evt *event.Event) bool {
		return kit.IsMessage(c.room, c.ghost, "")(evt) && evt.Content.AsMessage().MsgType == msgType
	})
	c.must(err)
	return evt, evt.Content.AsMessage()
}

// download fetches an event's file through the authenticated media API, decrypting it
// when the room is encrypted.
func download(t *testing.T, u *kit.User, content *event.MessageEventContent) []byte {
	t.Helper()
	ctx := t.Context()
	if content.File != nil {
		uri, err := content.File.URL.Parse()
		if err != nil {
			t.Fatalf("bad mxc %q: %v", content.File.URL, err)
		}
		data, err := u.Client.DownloadBytes(ctx, uri)
		if err != nil {
			t.Fatalf("failed to download %s: %v", uri, err)
		}
		if err := content.File.DecryptInPlace(data); err != nil {
			t.Fatalf("failed to decrypt %s: %v", uri, err)
		}
		return data
	}
	uri, err := content.URL.Parse()
	if err != nil {
		t.Fatalf("bad mxc %q: %v", content.URL, err)
	}
	data, err := u.Client.DownloadBytes(ctx, uri)
	if err != nil {
		t.Fatalf("failed to download %s: %v", uri, err)
	}
	return data
}

// A Meta user sends each kind of attachment: each arrives from their ghost as the
// right Matrix message, with its caption, type and size, and the file downloaded
// through the homeserver's authenticated media API is byte for byte what they sent; a
// voice note is a voice message. A file over the configured limit is refused before
// its download, with a notice naming it and saying why, and so are a file whose hosts
// stay down through the retries and a blob the hosts corrupt; the messages after them
// still arrive.
func TestSynapseMediaFromMeta(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		o.BridgeConfig = map[string]any{"network.media.max_size_mib.document": 1}
	})
	c := e.openChat("+491701110031", "+491702220032")

	for i, k := range mediaKinds {
		t.Run(k.kind, func(t *testing.T) {
			data := randomData(t, 5000+i*40000) // up to 165 kB: over the in-memory upload threshold
			mark := e.alice.Mark()
			c.sendMedia(k, data, 3)
			_, content := c.waitMedia(e.alice, mark, k.msgType)
			wantBody := k.caption
			if wantBody == "" {
				wantBody = k.fileName
			}
			if content.Body != wantBody || content.FileName != k.fileName {
				t.Errorf("body %q filename %q, want %q %q", content.Body, content.FileName, wantBody, k.fileName)
			}
			if content.Info == nil || content.Info.MimeType != k.mimetype || content.Info.Size != len(data) {
				t.Errorf("info %+v", content.Info)
			}
			if k.kind != "image" && k.kind != "document" && content.Info.Duration != 3000 {
				t.Errorf("duration %d ms", content.Info.Duration)
			}
			if (content.MSC3245Voice != nil) != k.voice {
				t.Errorf("voice message: %v, want %v", content.MSC3245Voice != nil, k.voice)
			}
			if k.voice && (content.MSC1767Audio == nil || content.MSC1767Audio.Duration != 3000) {
				t.Errorf("voice duration %+v", content.MSC1767Audio)
			}
			if got := download(t, e.alice, content); !bytes.Equal(got, data) {
				t.Fatalf("downloaded %d bytes, not the %d sent", len(got), len(data))
			}
		})
	}

	t.Run("20 MiB video", func(t *testing.T) {
		// Generated by metasim, which answers with the plaintext's SHA-256.
		var sent struct {
			Media struct {
				SHA256 string `json:"sha256"`
				Size   int    `json:"size"`
			} `json:"media"`
		}
		peakBefore, err := e.st.Bridge.PeakRSS()
		e.must(err)
		mark := e.alice.Mark()
		start := time.Now()
		e.must(e.st.Sim.Call(e.ctx, "POST", "/v1/users/"+c.peer.JID+"/messages", map[string]any{
			"to": c.account, "kind": "video", "media": map[string]any{"size": 20 << 20, "mimetype": "video/mp4", "seconds": 60},
		}, &sent))
		_, content := c.waitMedia(e.alice, mark, event.MsgVideo)
		took := time.Since(start)
		peakAfter, err := e.st.Bridge.PeakRSS()
		e.must(err)
		// The file streams through temporary files: the bridge's peak memory must not
		// grow with its size (the goal: under 16 MiB whatever the size).
		if growth := peakAfter - peakBefore; growth > 16<<20 {
			t.Errorf("the bridge's peak memory grew by %d MiB for a 20 MiB file", growth>>20)
		} else {
			t.Logf("the bridge's peak memory grew by %d KiB (peak %d MiB)", growth>>10, peakAfter>>20)
		}
		got := download(t, e.alice, content)
		sum := sha256.Sum256(got)
		if len(got) != 20<<20 || sent.Media.Size != 20<<20 || hex.EncodeToString(sum[:]) != sent.Media.SHA256 {
			t.Fatalf("downloaded %d bytes with SHA-256 %x, sent %d with %s", len(got), sum, sent.Media.Size, sent.Media.SHA256)
		}
		t.Logf("20 MiB from the Meta user's send to the Matrix event in %s", took.Round(time.Millisecond))
	})

	t.Run("first message of a new contact", func(t *testing.T) {
		// No portal yet: the attachment creates it, then lands in it.
		stranger, err := e.st.Sim.NewUser(e.ctx, "+491702220033", nil)
		e.must(err)
		data := randomData(t, 12345)
		mark := e.alice.Mark()
		_, err = stranger.Send(e.ctx, map[string]any{"to": c.account, "kind": "document",
			"media": map[string]any{"data": base64.StdEncoding.EncodeToString(data), "file_name": "hello.txt", "mimetype": "text/plain"}})
		e.must(err)
		evt, err := e.alice.WaitEventAfter(e.ctx, mark, 60*time.Second, "the new contact's file", func(evt *event.Event) bool {
			return evt.Type == event.EventMessage && evt.RoomID != c.room && evt.Content.AsMessage().FileName == "hello.txt"
		})
		e.must(err)
		if got := download(t, e.alice, evt.Content.AsMessage()); !bytes.Equal(got, data) {
			t.Fatalf("downloaded %d bytes, not the %d sent", len(got), len(data))
		}
	})

	t.Run("over the limit", func(t *testing.T) {
		mark := e.alice.Mark()
		big := mediaKind{"document", "", "big.pdf", "application/pdf", event.MsgFile, false}
		c.sendMedia(big, randomData(t, 1<<20+1), 0)
		_, notice := c.waitMedia(e.alice, mark, event.MsgNotice)
		if !strings.Contains(notice.Body, `The document "big.pdf" could not be bridged`) ||
			!strings.Contains(notice.Body, "over this bridge's limit of 1 MiB for document files") {
			t.Errorf("notice %q", notice.Body)
		}
		_, err := c.peer.SendText(e.ctx, c.account, "after the big file")
		e.must(err)
		waitMessage(t, e.alice, mark, c.room, c.ghost, "after the big file")
	})

	t.Run("media hosts down", func(t *testing.T) {
		e.must(e.st.Sim.Call(e.ctx, "POST", "/v1/media/faults", map[string]any{"fault": "unavailable"}, nil))
		defer func() { e.must(e.st.Sim.Call(e.ctx, "DELETE", "/v1/media/faults", nil, nil)) }()
		mark := e.alice.Mark()
		c.sendMedia(mediaKinds[3], randomData(t, 2000), 5)
		_, notice := c.waitMedia(e.alice, mark, event.MsgNotice)
		if !strings.Contains(notice.Body, `The audio "audio.mp3" could not be bridged`) || !strings.Contains(notice.Body, "kept failing (HTTP 503)") {
			t.Errorf("notice %q", notice.Body)
		}
		_, err := c.peer.SendText(e.ctx, c.account, "after the unreachable file")
		e.must(err)
		waitMessage(t, e.alice, mark, c.room, c.ghost, "after the unreachable file")
	})

	t.Run("corrupted by the media host", func(t *testing.T) {
		e.must(e.st.Sim.Call(e.ctx, "POST", "/v1/media/faults", map[string]any{"fault": "corrupt"}, nil))
		defer func() { e.must(e.st.Sim.Call(e.ctx, "DELETE", "/v1/media/faults", nil, nil)) }()
		mark := e.alice.Mark()
		c.sendMedia(mediaKinds[0], randomData(t, 2000), 0)
		_, notice := c.waitMedia(e.alice, mark, event.MsgNotice)
		if !strings.Contains(notice.Body, `The image "image.png" could not be bridged`) || !strings.Contains(notice.Body, "integrity check") ||
			!strings.Contains(notice.Body, "Caption: "+mediaKinds[0].caption) {
			t.Errorf("notice %q", notice.Body)
		}
		_, err := c.peer.SendText(e.ctx, c.account, "after the broken file")
		e.must(err)
		waitMessage(t, e.alice, mark, c.room, c.ghost, "after the broken file")
	})
}

// In an end-to-bridge encrypted portal the attachment is an encrypted file: the
// homeserver holds only ciphertext, and the Matrix user's client decrypts it to the
// bytes the Meta user sent.
func TestSynapseMediaFromMetaEncrypted(t *testing.T) {
	c := openEncryptedChat(t, "cryptomedia", "+491705550035", "+491706660036")
	e, alice, room := c.env, c.alice, c.room

	for _, k := range []mediaKind{mediaKinds[0], mediaKinds[2]} {
		t.Run(k.kind, func(t *testing.T) {
			data := randomData(t, 30000)
			mark := alice.Mark()
			c.sendMedia(k, data, 2)
			evt, err := alice.WaitEventAfter(e.ctx, mark, 60*time.Second, string(k.msgType), func(evt *event.Event) bool {
				return kit.IsMessage(room, "", "")(evt) && evt.Content.AsMessage().MsgType == k.msgType
			})
			e.must(err)
			content := evt.Content.AsMessage()
			if !evt.Mautrix.WasEncrypted || content.File == nil || content.URL != "" {
				t.Fatalf("encrypted %v, file %+v, url %q", evt.Mautrix.WasEncrypted, content.File, content.URL)
			}
			uri, err := content.File.URL.Parse()
			e.must(err)
			stored, err := alice.Client.DownloadBytes(e.ctx, uri)
			e.must(err)
			if bytes.Equal(stored, data) {
				t.Fatal("the homeserver holds the plaintext")
			}
			if got := download(t, alice, content); !bytes.Equal(got, data) {
				t.Fatalf("decrypted %d bytes, not the %d sent", len(got), len(data))
			}
		})
	}
}
