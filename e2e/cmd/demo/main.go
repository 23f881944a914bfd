// Command demo runs the whole stack on 127.0.0.1 (the real Synapse from the cached
// Debian sid chroot, metasim and the bridge on SQLite), plays a short conversation
// between a Matrix user and a simulated WhatsApp user, prints what each side saw, and
// stays up so that a person can join with any Matrix client. Ctrl-C stops everything.
//
//	make demo     (or: go run -tags goolm ./e2e/cmd/demo)
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	imgpng "image/png"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

const (
	aliceNumber = "+491701234567"
	bobNumber   = "+491709876543"
	carolNumber = "+491705550123"
)

func main() {
	scriptOnly := flag.Bool("exit", false, "stop after the scripted conversation instead of staying up")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *scriptOnly); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, scriptOnly bool) error {
	started := time.Now()
	root, err := kit.RepoRoot()
	if err != nil {
		return err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return err
	}
	base := filepath.Join(cache, "matrix-meta-interop", "demo")
	// Each run starts from nothing: a fresh Synapse, metasim and bridge database.
	if err := os.RemoveAll(base); err != nil {
		return err
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	say(out, "Building the bridge")
	bin, err := kit.BuildBridge(ctx, root, base)
	if err != nil {
		return err
	}
	say(out, "Starting Synapse (the first run builds its Debian chroot: about a minute), metasim and the bridge")
	st, err := kit.StartStack(ctx, kit.StackOptions{
		RepoRoot: root, BridgeBinary: bin, Dir: base, Progress: os.Stderr,
		Admins: []string{"@alice:" + kit.ServerName},
		Metasim: func(c *metasim.Config) {
			for _, name := range metasim.Networks() {
				c.Network(name).Limits.PushInterval = metasim.Duration(time.Second)
			}
		},
	})
	if err != nil {
		return err
	}
	defer st.Close()

	alice, err := st.Synapse.NewUser(ctx, "alice", true)
	if err != nil {
		return err
	}
	defer alice.Close()
	loginID, err := st.LoginBridge(ctx, alice, "whatsapp", aliceNumber)
	if err != nil {
		return err
	}
	if _, err := st.WaitLoginState(ctx, alice, loginID, "CONNECTED", 30*time.Second); err != nil {
		return err
	}
	bob, err := st.Sim.NewUser(ctx, bobNumber, map[string]any{"name": "Bob"})
	if err != nil {
		return err
	}
	room, err := st.StartChat(ctx, alice, loginID, bobNumber)
	if err != nil {
		return err
	}
	say(out, "Up in %.1f s. %s (Matrix) logged in as %s on WhatsApp and opened a chat with %s (simulated WhatsApp user)",
		time.Since(started).Seconds(), alice.ID, aliceNumber, bobNumber)

	if err := converse(ctx, out, st, alice, bob, room, loginID); err != nil {
		fmt.Fprintf(out, "\nThe conversation stopped: %v\n%s", err, st.Logs(30))
		return err
	}
	groupRoom, group, err := groupChat(ctx, out, st, alice, bob)
	if err != nil {
		fmt.Fprintf(out, "\nThe group chat stopped: %v\n%s", err, st.Logs(30))
		return err
	}
	printJoinInfo(out, st, alice, bob, room, groupRoom, group)
	if scriptOnly {
		return nil
	}
	<-ctx.Done()
	say(out, "Stopping")
	return nil
}

// converse plays the script and prints each side's view.
func converse(ctx context.Context, out io.Writer, st *kit.Stack, alice *kit.User, bob *kit.SimUser, room id.RoomID, loginID string) error {
	account := "7-" + aliceNumber[1:] + "@interop"
	wait := 30 * time.Second
	fmt.Fprintln(out, "\n── The conversation ──────────────────────────────────────────")

	// 1. Text from WhatsApp, with WhatsApp markup.
	mark := alice.Mark()
	if _, err := bob.SendText(ctx, account, "Hi Alice! 👋 This is *WhatsApp* calling."); err != nil {
		return err
	}
	hello, err := alice.WaitEventAfter(ctx, mark, wait, "Bob's text", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.EventMessage && evt.Sender != alice.ID
	})
	if err != nil {
		return err
	}
	msg := hello.Content.AsMessage()
	fmt.Fprintf(out, "WhatsApp → Matrix  Bob sent      %q\n", "Hi Alice! 👋 This is *WhatsApp* calling.")
	fmt.Fprintf(out, "                   Alice saw     %q (HTML %q) from %s\n", msg.Body, msg.FormattedBody, hello.Sender)

	// 2. Formatted text from Matrix.
	resp, err := alice.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "Hello Bob, from **Matrix**!", Format: event.FormatHTML,
		FormattedBody: "Hello Bob, from <strong>Matrix</strong>!",
	})
	if err != nil {
		return err
	}
	fromAlice, err := bob.WaitInbox(ctx, wait, "Alice's text", url.Values{"kind": {"text"}, "device": {bob.JID}}, func(map[string]any) bool { return true })
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Matrix → WhatsApp  Alice sent    %q (HTML %q)\n", "Hello Bob, from **Matrix**!", "Hello Bob, from <strong>Matrix</strong>!")
	fmt.Fprintf(out, "                   Bob saw       %q\n", dataString(fromAlice, "text"))

	// 3. Bob replies to Alice's message.
	mark = alice.Mark()
	_, err = bob.Send(ctx, map[string]any{"to": account, "kind": "text", "text": "Nice to meet you here!",
		"reply_to": map[string]any{"id": fromAlice["id"], "sender": fromAlice["sender"], "text": dataString(fromAlice, "text")}})
	if err != nil {
		return err
	}
	reply, err := alice.WaitEventAfter(ctx, mark, wait, "Bob's reply", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.EventMessage && evt.Sender != alice.ID
	})
	if err != nil {
		return err
	}
	replyTo := reply.Content.AsMessage().RelatesTo.GetReplyTo()
	fmt.Fprintf(out, "WhatsApp → Matrix  Bob replied   %q to Alice's message\n", "Nice to meet you here!")
	fmt.Fprintf(out, "                   Alice saw     %q in reply to %s (her message: %s)\n", reply.Content.AsMessage().Body, replyTo, resp.EventID)

	// 4. Alice reacts to Bob's first message; Bob reacts to Alice's.
	if _, err := alice.Client.SendReaction(ctx, room, hello.ID, "👍"); err != nil {
		return err
	}
	reaction, err := bob.WaitInbox(ctx, wait, "Alice's reaction", url.Values{"kind": {"reaction"}, "device": {bob.JID}}, func(map[string]any) bool { return true })
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Matrix → WhatsApp  Alice reacted 👍 to Bob's first message\n")
	fmt.Fprintf(out, "                   Bob saw       reaction %q on message %v\n", dataString(reaction, "text"), dataTarget(reaction))

	mark = alice.Mark()
	_, err = bob.Send(ctx, map[string]any{"to": account, "kind": "reaction", "text": "❤️",
		"target": map[string]any{"id": fromAlice["id"], "sender": fromAlice["sender"]}})
	if err != nil {
		return err
	}
	react, err := alice.WaitEventAfter(ctx, mark, wait, "Bob's reaction", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.EventReaction && evt.Sender != alice.ID
	})
	if err != nil {
		return err
	}
	rel := react.Content.AsReaction().RelatesTo
	fmt.Fprintf(out, "WhatsApp → Matrix  Bob reacted   ❤️ to Alice's message\n")
	fmt.Fprintf(out, "                   Alice saw     reaction %q on %s\n", rel.Key, rel.EventID)

	// 5. An image each way.
	mark = alice.Mark()
	_, err = bob.Send(ctx, map[string]any{"to": account, "kind": "image", "text": "Our office",
		"media": map[string]any{"width": 64, "height": 48}})
	if err != nil {
		return err
	}
	img, err := alice.WaitEventAfter(ctx, mark, wait, "Bob's image", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.EventMessage && evt.Sender != alice.ID
	})
	if err != nil {
		return err
	}
	m := img.Content.AsMessage()
	fmt.Fprintf(out, "WhatsApp → Matrix  Bob sent      a 64×48 image captioned %q\n", "Our office")
	if data, err := downloadMedia(ctx, alice, m); err != nil {
		fmt.Fprintf(out, "                   Alice saw     %s %q, but could not download it: %v\n", m.MsgType, m.Body, err)
	} else {
		w, h := 0, 0
		if m.Info != nil {
			w, h = m.Info.Width, m.Info.Height
		}
		fmt.Fprintf(out, "                   Alice saw     %s %q, %d×%d, %d bytes (downloaded from Synapse, SHA-256 %.16x…)\n",
			m.MsgType, m.Body, w, h, len(data), sha256.Sum256(data))
	}

	png := demoPNG()
	upload, err := alice.Client.UploadBytesWithName(ctx, png, "image/png", "matrix-logo.png")
	if err != nil {
		return err
	}
	_, err = alice.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "Sent from Matrix", FileName: "matrix-logo.png", URL: upload.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "image/png", Size: len(png), Width: 32, Height: 32},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Matrix → WhatsApp  Alice sent    a 32×32 PNG captioned %q, %d bytes (SHA-256 %.16x…)\n", "Sent from Matrix", len(png), sha256.Sum256(png))
	media, err := bob.WaitInbox(ctx, wait, "Alice's image", url.Values{"kind": {"media"}, "device": {bob.JID}}, func(item map[string]any) bool {
		data, _ := item["data"].(map[string]any)
		mi, _ := data["media"].(map[string]any)
		return mi != nil && mi["status"] != "pending"
	})
	if err != nil {
		fmt.Fprintf(out, "                   Bob saw       nothing: %v\n", err)
	} else {
		data, _ := media["data"].(map[string]any)
		mi, _ := data["media"].(map[string]any)
		fmt.Fprintf(out, "                   Bob saw       %v %v captioned %q, fetch %v, %v bytes (SHA-256 %.16s…)\n",
			mi["type"], mi["mimetype"], data["text"], mi["status"], mi["size"], mi["sha256"])
	}
	fmt.Fprintln(out, "──────────────────────────────────────────────────────────────")
	return nil
}

// groupChat has Bob make a WhatsApp group with Alice and Carol, and plays a short
// exchange in it.
func groupChat(ctx context.Context, out io.Writer, st *kit.Stack, alice *kit.User, bob *kit.SimUser) (id.RoomID, string, error) {
	const subject = "Weekend plans"
	wait := 30 * time.Second
	carol, err := st.Sim.NewUser(ctx, carolNumber, map[string]any{"name": "Carol"})
	if err != nil {
		return "", "", err
	}
	fmt.Fprintln(out, "\n── A group ───────────────────────────────────────────────────")
	var created struct {
		JID string `json:"jid"`
	}
	account := "7-" + aliceNumber[1:] + "@interop"
	if err := st.Sim.Call(ctx, "POST", "/v1/groups", map[string]any{"actor": bob.JID, "subject": subject,
		"participants": []string{account, carol.JID}}, &created); err != nil {
		return "", "", err
	}
	nameEvt, err := alice.WaitEvent(ctx, wait, "the group's room", func(evt *event.Event) bool {
		return evt.Type == event.StateRoomName && evt.Content.AsRoomName().Name == subject
	})
	if err != nil {
		return "", "", err
	}
	room := nameEvt.RoomID
	fmt.Fprintf(out, "WhatsApp → Matrix  Bob made      the group %q with Alice and Carol\n", subject)
	fmt.Fprintf(out, "                   Alice got     the room %s named %q\n", room, subject)

	mark := alice.Mark()
	if _, err := carol.SendText(ctx, created.JID, "Who is in for a hike on Saturday?"); err != nil {
		return "", "", err
	}
	hike, err := alice.WaitEventAfter(ctx, mark, wait, "Carol's group message", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.EventMessage && evt.Sender != alice.ID
	})
	if err != nil {
		return "", "", err
	}
	fmt.Fprintf(out, "WhatsApp → Matrix  Carol sent    %q to the group\n", "Who is in for a hike on Saturday?")
	fmt.Fprintf(out, "                   Alice saw     %q from %s\n", hike.Content.AsMessage().Body, hike.Sender)

	if _, err := alice.SendText(ctx, room, "Count me in!"); err != nil {
		return "", "", err
	}
	fmt.Fprintf(out, "Matrix → WhatsApp  Alice sent    %q to the group\n", "Count me in!")
	for _, u := range []struct {
		name string
		user *kit.SimUser
	}{{"Bob", bob}, {"Carol", carol}} {
		item, err := u.user.WaitInbox(ctx, wait, "Alice's group message", url.Values{"kind": {"text"}, "chat": {created.JID}}, func(item map[string]any) bool { return item["sender"] == account })
		if err != nil {
			fmt.Fprintf(out, "                   %-5s saw     nothing: %v\n", u.name, err)
			continue
		}
		fmt.Fprintf(out, "                   %-5s saw     %q from %v\n", u.name, dataString(item, "text"), item["sender"])
	}
	fmt.Fprintln(out, "──────────────────────────────────────────────────────────────")
	return room, created.JID, nil
}

func printJoinInfo(out io.Writer, st *kit.Stack, alice *kit.User, bob *kit.SimUser, room, groupRoom id.RoomID, group string) {
	control := st.Sim.Sim.ControlURL()
	fmt.Fprintf(out, `
The stack stays up until Ctrl-C.

Join with any Matrix client (Element, Cinny, gomuks…):
  homeserver  %s
  user        %s
  password    %s
  the chat    %s  (with %s, WhatsApp)
  the group   %s  (%s: Bob, Carol and Alice)

Drive the simulated WhatsApp user (metasim control API, metasim/API.md):
  export H="Authorization: Bearer %s" U=%s/v1/users/%s
  curl -sS -H "$H" -X POST $U/messages -d '{"to": "7-%s@interop", "kind": "text", "text": "hello *again*"}'
  curl -sS -H "$H" -X POST $U/typing -d '{"to": "7-%s@interop", "state": "composing"}'
  curl -sS -H "$H" "$U/inbox?since=0&wait=30s&kind=text"

Logs: bridge %s
      synapse %s
`, st.Synapse.URL, alice.ID, alice.Password, room, bobNumber, groupRoom, group,
		st.Sim.Token, control, bob.JID, aliceNumber[1:], aliceNumber[1:], st.Bridge.LogPath, st.Synapse.LogPath)
}

// downloadMedia fetches a message's file through the authenticated media API, as a
// client would.
func downloadMedia(ctx context.Context, u *kit.User, m *event.MessageEventContent) ([]byte, error) {
	uri := m.URL
	if m.File != nil {
		return nil, errors.New("the file is encrypted")
	}
	parsed, err := uri.Parse()
	if err != nil {
		return nil, err
	}
	return u.Client.DownloadBytes(ctx, parsed)
}

// demoPNG draws a small image for Alice to send.
func demoPNG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 32, 32))
	for y := range 32 {
		for x := range 32 {
			img.Set(x, y, color.RGBA{R: uint8(x * 8), G: 0x80, B: uint8(y * 8), A: 0xff})
		}
	}
	var buf bytes.Buffer
	_ = imgpng.Encode(&buf, img)
	return buf.Bytes()
}

func dataString(item map[string]any, key string) string {
	data, _ := item["data"].(map[string]any)
	s, _ := data[key].(string)
	return s
}

func dataTarget(item map[string]any) any {
	data, _ := item["data"].(map[string]any)
	if t, ok := data["target"].(map[string]any); ok {
		return t["id"]
	}
	return data["target"]
}

func say(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "[demo] "+format+"\n", args...)
}
