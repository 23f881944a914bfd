//go:build synapse

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
)

// outPNG is a real PNG with a gradient, so its thumbnail is not trivial.
func outPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(x), G: uint8(y), B: 200, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// outJPEG is a JPEG with a gradient.
func outJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(outPNG(t, w, h)))
	must(t, err)
	var buf bytes.Buffer
	must(t, jpeg.Encode(&buf, img, &jpeg.Options{Quality: 60}))
	return buf.Bytes()
}

// hostedLog is the bridge's log line about hosting the file of the message with this
// stanza id (connector/media_out.go), nil when there is none.
func (c *chat) hostedLog(t *testing.T, stanzaID string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(c.st.Bridge.LogPath)
	must(t, err)
	for _, line := range bytes.Split(data, []byte("\n")) {
		var entry map[string]any
		if json.Unmarshal(line, &entry) == nil && entry["message"] == "Hosted the encrypted file of an outgoing message" &&
			entry["message_id"] == stanzaID {
			return entry
		}
	}
	return nil
}

// upload puts data in Synapse's media repository as the Matrix user.
func (c *chat) upload(t *testing.T, data []byte, mime string) id.ContentURIString {
	t.Helper()
	resp, err := c.alice.Client.UploadBytes(c.ctx, data, mime)
	must(t, err)
	return resp.ContentURI.CUString()
}

// mediaField reads data.media of an inbox item.
func mediaField(item map[string]any) map[string]any {
	m, _ := kit.ItemData(item)["media"].(map[string]any)
	return m
}

// isMediaWithSHA matches a fetched media item whose verified plaintext hashes to sum.
func isMediaWithSHA(sum string) func(map[string]any) bool {
	return func(item map[string]any) bool {
		m := mediaField(item)
		return item["kind"] == "media" && m != nil && m["sha256"] == sum
	}
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// signedFetch fetches a hosted blob as Meta's proxy does: GET with the network's
// callback signature.
func (c *chat) signedFetch(t *testing.T, rawURL string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, rawURL, nil)
	must(t, err)
	callback.SignMediaFetch(req, []byte(c.st.Sim.Secrets["whatsapp"]), time.Now())
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, body
}

// A Matrix user sends each kind of file through the real Synapse and the bridge
// process: the simulated WhatsApp user's device fetches each from the bridge's media
// host through Meta's proxy, and the verified plaintext is exactly what was uploaded;
// a voice message arrives as a voice note (ptt). A file over the limit is refused
// with a notice that says so, whether its event says its size or lies about it, and
// the next message still goes through. Deleting a sent file for everyone deletes the
// hosted blob.
func TestSynapseMediaOut(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		// A small image limit, to be refused without moving megabytes around.
		o.BridgeConfig = map[string]any{"network.media.max_size_mib.image": 1}
	})
	c := e.openChat("+491701110041", "+491702220042")
	bot := id.NewUserID("metainteropbot", kit.ServerName)

	photo := outPNG(t, 320, 240)
	sticker := outPNG(t, 128, 128)
	videoThumb := outPNG(t, 160, 90)
	clip := randomData(t, 200_000)
	voice := randomData(t, 20_000)
	song := randomData(t, 60_000)
	report := append([]byte("%PDF-1.4\n"), randomData(t, 300_000)...)
	largePhoto := outJPEG(t, 2200, 2000)

	type sent struct {
		name    string
		data    []byte
		mime    string
		evtType event.Type
		content func(uri id.ContentURIString) *event.MessageEventContent
		// What the Meta user's device shows.
		mediaType, caption, fileName string
		width, height, seconds       float64
		// thumbnail: the bridge sent a JPEG thumbnail (its log says so).
		thumbnail bool
	}
	cases := []sent{
		{"image with caption", photo, "image/png", event.EventMessage, func(uri id.ContentURIString) *event.MessageEventContent {
			return &event.MessageEventContent{MsgType: event.MsgImage, Body: "the view from here", FileName: "view.png", URL: uri,
				Info: &event.FileInfo{MimeType: "image/png", Size: len(photo)}}
		}, "image", "the view from here", "", 320, 240, 0, true},
		{"sticker", sticker, "image/png", event.EventSticker, func(uri id.ContentURIString) *event.MessageEventContent {
			return &event.MessageEventContent{Body: "a square", URL: uri,
				Info: &event.FileInfo{MimeType: "image/png", Width: 128, Height: 128, Size: len(sticker)}}
		}, "image", "", "", 128, 128, 0, true},
		{"video with thumbnail", clip, "video/mp4", event.EventMessage, func(uri id.ContentURIString) *event.MessageEventContent {
			return &event.MessageEventContent{MsgType: event.MsgVideo, Body: "clip.mp4", URL: uri,
				Info: &event.FileInfo{MimeType: "video/mp4", Size: len(clip), Width: 1280, Height: 720, Duration: 7_400,
					ThumbnailURL: c.upload(t, videoThumb, "image/png"), ThumbnailInfo: &event.FileInfo{MimeType: "image/png", Width: 160, Height: 90}}}
		}, "video", "", "", 1280, 720, 7, true},
		{"voice message", voice, "audio/ogg", event.EventMessage, func(uri id.ContentURIString) *event.MessageEventContent {
			return &event.MessageEventContent{MsgType: event.MsgAudio, Body: "Voice message.ogg", URL: uri,
				Info:         &event.FileInfo{MimeType: "audio/ogg", Size: len(voice), Duration: 4_000},
				MSC1767Audio: &event.MSC1767Audio{Duration: 4_000}, MSC3245Voice: &event.MSC3245Voice{}}
		}, "ptt", "", "", 0, 0, 4, false},
		{"audio", song, "audio/mpeg", event.EventMessage, func(uri id.ContentURIString) *event.MessageEventContent {
			return &event.MessageEventContent{MsgType: event.MsgAudio, Body: "song.mp3", URL: uri,
				Info: &event.FileInfo{MimeType: "audio/mpeg", Size: len(song), Duration: 65_000}}
		}, "audio", "", "", 0, 0, 65, false},
		{"document with caption", report, "application/pdf", event.EventMessage, func(uri id.ContentURIString) *event.MessageEventContent {
			return &event.MessageEventContent{MsgType: event.MsgFile, Body: "the minutes", FileName: "minutes.pdf", URL: uri,
				Info: &event.FileInfo{MimeType: "application/pdf", Size: len(report)}}
		}, "document", "the minutes", "minutes.pdf", 0, 0, 0, false},
		// Too large to decode in the bridge, and no thumbnail in the event: Synapse's.
		{"large photo", largePhoto, "image/jpeg", event.EventMessage, func(uri id.ContentURIString) *event.MessageEventContent {
			return &event.MessageEventContent{MsgType: event.MsgImage, Body: "large.jpg", URL: uri,
				Info: &event.FileInfo{MimeType: "image/jpeg", Size: len(largePhoto)}}
		}, "image", "", "", 2200, 2000, 0, true},
	}
	t.Run("the room announces files and their sizes", func(t *testing.T) {
		evt, err := c.alice.WaitEvent(c.ctx, waitTimeout, "the room features", func(evt *event.Event) bool {
			return evt.RoomID == c.room && evt.Type == event.StateBeeperRoomFeatures
		})
		must(t, err)
		var features event.RoomFeatures
		must(t, json.Unmarshal(evt.Content.VeryRaw, &features))
		for capType, want := range map[event.CapabilityMsgType]int64{event.MsgImage: 1 << 20, event.MsgVideo: 64 << 20,
			event.CapMsgVoice: 16 << 20, event.MsgFile: config.MaxProxyPlaintext} {
			if ff := features.File[capType]; ff == nil || ff.MaxSize != want {
				t.Errorf("%s: %+v, want a limit of %d bytes", capType, ff, want)
			}
		}
	})
	var docEvent id.EventID
	var docURL string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			content := tc.content(c.upload(t, tc.data, tc.mime))
			resp, err := c.alice.Client.SendMessageEvent(c.ctx, c.room, tc.evtType, content)
			must(t, err)
			waitFor(t, c.alice, 0, tc.name+" sent", kit.IsMessageStatus(c.room, resp.EventID, "SUCCESS"))
			item := c.inbox(t, tc.name, "media", isMediaWithSHA(sha256Hex(tc.data)))
			m := mediaField(item)
			if m["status"] != "ok" || m["size"] != float64(len(tc.data)) || m["file_length"] != float64(len(tc.data)) {
				t.Errorf("media %v, want status ok and %d bytes", m, len(tc.data))
			}
			if m["type"] != tc.mediaType || m["mimetype"] != tc.mime {
				t.Errorf("type %v %v, want %s %s", m["type"], m["mimetype"], tc.mediaType, tc.mime)
			}
			num := func(k string) float64 { v, _ := m[k].(float64); return v }
			if num("width") != tc.width || num("height") != tc.height || num("seconds") != tc.seconds {
				t.Errorf("width %v height %v seconds %v, want %v %v %v", m["width"], m["height"], m["seconds"], tc.width, tc.height, tc.seconds)
			}
			fileName, _ := m["file_name"].(string)
			if text, _ := kit.ItemData(item)["text"].(string); text != tc.caption || fileName != tc.fileName {
				t.Errorf("caption %q file name %q, want %q %q", text, fileName, tc.caption, tc.fileName)
			}
			if hosted := c.hostedLog(t, item["id"].(string)); hosted["thumbnail"] != tc.thumbnail {
				t.Errorf("the bridge logged %v, want thumbnail %v", hosted, tc.thumbnail)
			}
			if tc.mediaType == "document" {
				docEvent, docURL = resp.EventID, m["url"].(string)
			}
		})
	}

	t.Run("20 MiB document", func(t *testing.T) {
		data := randomData(t, 20<<20)
		uri := c.upload(t, data, "application/zip")
		peakBefore, err := c.st.Bridge.PeakRSS()
		must(t, err)
		start := time.Now()
		_, err = c.alice.Send(c.ctx, c.room, &event.MessageEventContent{MsgType: event.MsgFile, Body: "archive.zip", URL: uri,
			Info: &event.FileInfo{MimeType: "application/zip", Size: len(data)}})
		must(t, err)
		item, err := c.peer.WaitInbox(c.ctx, 2*time.Minute, "the 20 MiB document", url.Values{"kind": {"media"}}, isMediaWithSHA(sha256Hex(data)))
		must(t, err)
		took := time.Since(start)
		peakAfter, err := c.st.Bridge.PeakRSS()
		must(t, err)
		if m := mediaField(item); m["status"] != "ok" || m["size"] != float64(len(data)) {
			t.Fatalf("media %v", m)
		}
		// Download, encryption and hosting stream through a temporary file and a pipe:
		// the bridge's peak memory must not grow with the file (the goal: under
		// 16 MiB whatever the size).
		if growth := peakAfter - peakBefore; growth > 16<<20 {
			t.Errorf("the bridge's peak memory grew by %d MiB for a 20 MiB file", growth>>20)
		} else {
			t.Logf("the bridge's peak memory grew by %d KiB (peak %d MiB)", growth>>10, peakAfter>>20)
		}
		t.Logf("20 MiB from the Matrix send to the Meta user's verified copy in %s (%.1f MB/s)",
			took.Round(time.Millisecond), float64(len(data))/1e6/took.Seconds())
	})

	// refused sends a file and checks the failed status and the bot's notice.
	refused := func(t *testing.T, data []byte, size int, want string) {
		t.Helper()
		mark := c.alice.Mark()
		evtID, err := c.alice.Send(c.ctx, c.room, &event.MessageEventContent{MsgType: event.MsgImage, Body: "big.png",
			URL: c.upload(t, data, "image/png"), Info: &event.FileInfo{MimeType: "image/png", Size: size}})
		must(t, err)
		statusEvt := waitFor(t, c.alice, mark, "the refusal", kit.IsMessageStatus(c.room, evtID, ""))
		if ms, _ := kit.ParseMessageStatus(statusEvt); !strings.HasPrefix(ms.Status, "FAIL_") || !strings.Contains(ms.Message, want) {
			t.Errorf("status %s %q, want a failure saying %q", ms.Status, ms.Message, want)
		}
		notice := waitFor(t, c.alice, mark, "the refusal notice", func(evt *event.Event) bool {
			return kit.IsMessage(c.room, bot, "")(evt) && replyTo(evt) == evtID
		})
		if msg := notice.Content.AsMessage(); msg.MsgType != event.MsgNotice || !strings.Contains(msg.Body, want) {
			t.Errorf("notice %s %q, want one saying %q", msg.MsgType, msg.Body, want)
		}
	}
	big := append(outPNG(t, 16, 16), randomData(t, 1<<20+100_000)...)
	t.Run("oversized image, size in the event", func(t *testing.T) {
		// bridgev2 checks the declared size against the room features.
		refused(t, big, len(big), "larger than the maximum of 1.0 MiB")
	})
	t.Run("oversized image, size understated", func(t *testing.T) {
		refused(t, big, 1000, "big.png is larger than 1 MiB; WhatsApp users can receive images up to 1 MiB")
	})
	t.Run("the next message goes through", func(t *testing.T) {
		_, err := c.alice.SendText(c.ctx, c.room, "after the big one")
		must(t, err)
		c.inbox(t, "the text after the refusals", "text", inboxText("after the big one"))
		items, _, err := c.peer.Inbox(c.ctx, 0, 0, url.Values{"kind": {"media"}})
		must(t, err)
		for _, item := range items {
			if isMediaWithSHA(sha256Hex(big))(item) {
				t.Error("the refused file reached the Meta user")
			}
		}
	})

	t.Run("deleting the document deletes its hosted blob", func(t *testing.T) {
		if docEvent == "" {
			t.Fatal("the document was not sent")
		}
		code, blob := c.signedFetch(t, docURL)
		// AES-CBC pads to whole blocks, then the 10-byte MAC.
		if want := (len(report)/16+1)*16 + 10; code != http.StatusOK || len(blob) != want {
			t.Fatalf("before the revoke: %d, %d bytes, want 200 and %d", code, len(blob), want)
		}
		_, err := c.alice.Redact(c.ctx, c.room, docEvent)
		must(t, err)
		c.inbox(t, "the revoke", "revoke", func(map[string]any) bool { return true })
		deadline := time.Now().Add(10 * time.Second)
		for {
			if code, _ = c.signedFetch(t, docURL); code == http.StatusNotFound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the revoked document is still served (%d)", code)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// In an end-to-bridge encrypted portal the Matrix user's client encrypts the file
// itself (an m.file with `file`, not `url`): the bridge downloads it, decrypts and
// verifies it, and the Meta user receives exactly the plaintext.
func TestSynapseMediaOutEncrypted(t *testing.T) {
	c := openEncryptedChat(t, "cryptomedia", "+491705550045", "+491706660046")
	e, alice, peer, room := c.env, c.alice, c.peer, c.room

	plain := append([]byte("%PDF-1.4\n"), randomData(t, 150_000)...)
	ef := attachment.NewEncryptedFile()
	ciphertext := bytes.Clone(plain)
	ef.EncryptInPlace(ciphertext)
	up, err := alice.Client.UploadBytes(e.ctx, ciphertext, "application/octet-stream")
	e.must(err)
	_, err = alice.Send(e.ctx, room, &event.MessageEventContent{MsgType: event.MsgFile, Body: "secret.pdf",
		File: &event.EncryptedFileInfo{EncryptedFile: *ef, URL: up.ContentURI.CUString()},
		Info: &event.FileInfo{MimeType: "application/pdf", Size: len(plain)}})
	e.must(err)
	item, err := peer.WaitInbox(e.ctx, waitTimeout, "the decrypted document", url.Values{"kind": {"media"}}, isMediaWithSHA(sha256Hex(plain)))
	e.must(err)
	if m := mediaField(item); m["status"] != "ok" || m["type"] != "document" || m["file_name"] != "secret.pdf" || m["size"] != float64(len(plain)) {
		t.Errorf("media %v", m)
	}
}
