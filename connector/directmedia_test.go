package connector

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/mediaproxy"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
)

// A media ID names the login, chat, sender, message and part, and nothing else: it
// survives the trip, fits in bridgev2's 255-character mxc:// URI, and anything that
// is not exactly such an ID is refused.
func TestDirectMediaID(t *testing.T) {
	peer := jid.JID{User: "491709876543", Server: jid.ServerGateway}
	msgrPeer := jid.JID{User: "100004211112222", Server: jid.ServerMessenger}
	account := jid.Interop(12, "491701234567")
	login := ids.MakeUserLoginID(ids.WhatsApp, account)
	good := []struct {
		name string
		id   directMediaID
	}{
		{"from the peer", directMediaID{Login: login, Message: ids.MessageKey{Chat: peer, Sender: peer, StanzaID: "3EB0C0FFEE"}}},
		{"from me", directMediaID{Login: login, Message: ids.MessageKey{Chat: peer, Sender: account, StanzaID: "3EB0C0FFEE"}}},
		{"messenger, with a part", directMediaID{Login: ids.MakeUserLoginID(ids.Messenger, jid.Interop(999, "358401234567890")),
			Message: ids.MessageKey{Chat: msgrPeer, Sender: msgrPeer, StanzaID: strings.Repeat("A", 64)}, Part: "1"}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := tc.id.mediaID()
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseDirectMediaID(raw)
			if err != nil || got != tc.id {
				t.Fatalf("parsed %+v, %v; want %+v", got, err, tc.id)
			}
			// bridgev2 signs it: a 4-byte prefix and 16 bytes of HMAC, base64 in the mxc URI.
			mxc := "mxc://direct-media.bridge.example.org/" + base64.RawURLEncoding.EncodeToString(make([]byte, 4+len(raw)+16))
			if len(mxc) > 255 {
				t.Errorf("mxc URI %d characters long", len(mxc))
			}
		})
	}

	valid, err := good[0].id.mediaID()
	if err != nil {
		t.Fatal(err)
	}
	encode := func(version byte, fields ...string) networkid.MediaID {
		out := []byte{version}
		for _, f := range fields {
			out = append(out, byte(len(f)))
			out = append(out, f...)
		}
		return networkid.MediaID(out)
	}
	chat := peer.String()
	bad := []struct {
		name string
		raw  networkid.MediaID
	}{
		{"empty", nil},
		{"unknown version", encode(2, string(login), chat, "", "X", "")},
		{"truncated", valid[:len(valid)-3]},
		{"length past the end", append(append(networkid.MediaID{}, valid[:len(valid)-1]...), 9)},
		{"trailing bytes", append(append(networkid.MediaID{}, valid...), 0)},
		{"too few fields", encode(1, string(login), chat, "", "X")},
		{"not a login", encode(1, "whatsapp:nobody", chat, "", "X", "")},
		{"unknown network", encode(1, "telegram:12-491701234567", chat, "", "X", "")},
		{"chat with a device", encode(1, string(login), "491709876543:3@s.whatsapp.net", "", "X", "")},
		{"chat not a JID", encode(1, string(login), "../../etc", "", "X", "")},
		{"sender not a user", encode(1, string(login), chat, "1234@g.us", "X", "")},
		{"sender spelled out though it is the chat", encode(1, string(login), chat, chat, "X", "")},
		{"no stanza id", encode(1, string(login), chat, "", "", "")},
		{"stanza id not UTF-8", encode(1, string(login), chat, "", "\xff\xfe", "")},
	}
	for _, tc := range bad {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			if got, err := parseDirectMediaID(tc.raw); !errors.Is(err, errInvalidMediaID) {
				t.Fatalf("parsed %+v, %v", got, err)
			}
		})
	}
	if _, err := (directMediaID{Login: login, Message: ids.MessageKey{Chat: peer, Sender: peer, StanzaID: strings.Repeat("x", 256)}}).mediaID(); err == nil {
		t.Error("a 256-byte stanza id was encoded")
	}
}

// directMediaBridge is a bridge on SQLite with one WhatsApp login whose media_conn
// points at metasim's media hosts, direct media on, and bridgev2's media proxy in
// front of Download, as the homeserver reaches it.
type directMediaBridge struct {
	c      *InteropConnector
	br     *bridgev2.Bridge
	ic     *InteropClient
	mh     *mediaHosts
	portal *bridgev2.Portal
	peer   jid.JID
	proxy  *httptest.Server
	// encrypted is what the room's encryption check answers.
	encrypted bool
}

const directMediaServer = "media.test.invalid"

func newDirectMediaBridge(t *testing.T, db *dbutil.Database) *directMediaBridge {
	t.Helper()
	ctx := context.Background()
	d := &directMediaBridge{mh: newMediaHosts(t), peer: jid.JID{User: "491709876543", Server: jid.ServerGateway}}
	d.c = newTestConnector(t, func(nc *config.NetworkConfig) { nc.Media.StorePath = t.TempDir() })
	d.br, _ = newTestBridge(t, db, d.c)
	d.c.SetUseDirectMedia()
	d.c.direct.contentURI = func(_ context.Context, mediaID networkid.MediaID) (id.ContentURIString, error) {
		return id.ContentURI{Homeserver: directMediaServer, FileID: base64.RawURLEncoding.EncodeToString(mediaID)}.CUString(), nil
	}
	d.c.direct.encrypted = func(context.Context, id.RoomID) (bool, error) { return d.encrypted, nil }

	account := jid.Interop(12, "491701234567")
	loginID := ids.MakeUserLoginID(ids.WhatsApp, account)
	alice, err := d.br.GetUserByMXID(ctx, "@alice:test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	login, err := alice.NewLogin(ctx, &database.UserLogin{ID: loginID, RemoteName: "+491701234567",
		Metadata: &UserLoginMetadata{Network: ids.WhatsApp, Number: "491701234567", InteropJID: account}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.ic = login.Client.(*InteropClient)
	conn, err := d.mh.mediaConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.ic.mediaConn.conn = conn // as if fetched over the connection
	d.portal, err = d.br.GetPortalByKey(ctx, ids.MakePortalKey(d.peer, loginID))
	if err != nil {
		t.Fatal(err)
	}
	d.portal.MXID = "!room:test.invalid"
	if err := d.br.DB.Ghost.Insert(ctx, &database.Ghost{BridgeID: d.br.ID, ID: ids.MakeUserID(d.peer)}); err != nil { // the messages' sender
		t.Fatal(err)
	}

	mp, err := mediaproxy.New(directMediaServer, federation.GenerateSigningKey().SynapseString(),
		func(ctx context.Context, mediaID string, params map[string]string) (mediaproxy.GetMediaResponse, error) {
			raw, err := base64.RawURLEncoding.DecodeString(mediaID)
			if err != nil {
				return nil, mediaproxy.ErrInvalidMediaIDSyntax
			}
			return d.c.Download(ctx, raw, params)
		})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mp.RegisterRoutes(mux, zerolog.Nop())
	d.proxy = httptest.NewServer(mux)
	t.Cleanup(d.proxy.Close)
	return d
}

// receive converts an incoming image message the way bridgev2 does and stores its part.
func (d *directMediaBridge) receive(t *testing.T, stanzaID string, m *msgconv.IncomingMedia, intent *fakeIntent) *bridgev2.ConvertedMessagePart {
	t.Helper()
	ctx := context.Background()
	msg := &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Mimetype: proto.String("image/png"), DirectPath: proto.String(m.DirectPath),
		MediaKey: m.MediaKey, FileSha256: m.FileSHA256, FileEncSha256: m.FileEncSHA256, FileLength: proto.Uint64(m.FileLength),
		Width: proto.Uint32(8), Height: proto.Uint32(8)}}
	msgID := ids.MakeMessageID(d.peer, d.peer, stanzaID)
	conv := d.ic.converter()
	conv.Media = d.ic.newMediaUploader(d.portal, intent, msgID, "")
	converted, err := conv.FromMeta(ctx, msgconv.MetaInfo{Chat: d.peer, Sender: d.peer}, msg)
	if err != nil {
		t.Fatal(err)
	}
	part := converted.Parts[0]
	if err := d.br.DB.Message.Insert(ctx, &database.Message{BridgeID: d.br.ID, ID: msgID, MXID: id.EventID("$" + stanzaID), Room: d.portal.PortalKey,
		SenderID: ids.MakeUserID(d.peer), Timestamp: time.Now(), Metadata: part.DBMetadata}); err != nil {
		t.Fatal(err)
	}
	return part
}

// get downloads an mxc:// URI through the proxy's client API, as a Matrix client
// would from the bridge's media server.
func (d *directMediaBridge) get(t *testing.T, mxc id.ContentURIString) (int, http.Header, []byte) {
	t.Helper()
	u, err := mxc.Parse()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(d.proxy.URL + "/_matrix/client/v1/media/download/" + u.Homeserver + "/" + u.FileID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// matrixError reads a Matrix error body.
func matrixError(t *testing.T, body []byte) (code, msg string) {
	t.Helper()
	var e struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not a Matrix error: %q", body)
	}
	return e.ErrCode, e.Error
}

// With direct media on, an image from a Meta user becomes the bridge's own mxc:// URI
// without a download; the file is fetched only when someone downloads that URI, and
// then it arrives byte for byte, through the client and the federation API alike.
// What Meta's hosts no longer have, what fails its checks, what is over the limit now
// and what names no stored message is refused with a Matrix error that says why, and
// no temporary file is left behind.
func TestDirectMediaDownload(t *testing.T) {
	sqltest.Run(t, testDirectMediaDownload)
}

func testDirectMediaDownload(t *testing.T, db *dbutil.Database) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the media proxy and the fetcher put their files
	d := newDirectMediaBridge(t, db)
	plain := randomBytes(t, 70000)
	m := d.mh.upload(t, plain, mediacrypt.Image)
	intent := &fakeIntent{}
	part := d.receive(t, "IMG1", m, intent)
	c := part.Content
	if c.MsgType != event.MsgImage || !strings.HasPrefix(string(c.URL), "mxc://"+directMediaServer+"/") || c.File != nil {
		t.Fatalf("bridged as %s %q url %q", c.MsgType, c.Body, c.URL)
	}
	if c.Info.Size != len(plain) || c.Info.MimeType != "image/png" || c.Info.Width != 8 {
		t.Errorf("info %+v", c.Info)
	}
	if intent.uploaded != nil || d.mh.requests.Load() != 0 {
		t.Fatalf("bridging uploaded %d bytes and made %d requests to Meta", len(intent.uploaded), d.mh.requests.Load())
	}
	raw, _ := json.Marshal(part.DBMetadata)
	if !bytes.Contains(raw, []byte(`"direct_media"`)) {
		t.Fatalf("stored metadata %s", raw)
	}
	if strings.Contains(string(c.URL), base64.RawURLEncoding.EncodeToString(m.MediaKey)) {
		t.Fatal("the URI holds the media key")
	}

	status, header, body := d.get(t, c.URL)
	if status != http.StatusOK || !bytes.Equal(body, plain) || header.Get("Content-Type") != "image/png" {
		t.Fatalf("download: HTTP %d, %q, %d bytes (want the %d sent)", status, header.Get("Content-Type"), len(body), len(plain))
	}
	if n := d.mh.requests.Load(); n != 1 {
		t.Errorf("%d requests to Meta's hosts for one download", n)
	}

	// The homeserver fetches it over federation as multipart/mixed.
	u, _ := c.URL.Parse()
	resp, err := http.Get(d.proxy.URL + "/_matrix/federation/v1/media/download/" + u.FileID)
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("federation download: HTTP %d %q %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	if _, err := mr.NextPart(); err != nil { // the JSON metadata
		t.Fatal(err)
	}
	filePart, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(filePart)
	_ = resp.Body.Close()
	if err != nil || !bytes.Equal(got, plain) || filePart.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("federation download: %d bytes as %q, %v", len(got), filePart.Header.Get("Content-Type"), err)
	}

	refusals := []struct {
		name    string
		prepare func(t *testing.T) id.ContentURIString
		status  int
		errcode string
		says    string
	}{
		{"tampered blob", func(t *testing.T) id.ContentURIString {
			m := d.mh.upload(t, randomBytes(t, 5000), mediacrypt.Image)
			mxc := d.receive(t, "TAMPERED", m, &fakeIntent{}).Content.URL
			d.mh.host.SetFault(m.DirectPath, media.FaultCorrupt)
			return mxc
		}, http.StatusBadGateway, "IO.GITHUB.MATRIX_META_INTEROP.MEDIA_FAILED", "integrity check (MAC)"},
		{"wrong plaintext hash", func(t *testing.T) id.ContentURIString {
			m := d.mh.upload(t, randomBytes(t, 5000), mediacrypt.Image)
			m.FileSHA256 = bytes.Repeat([]byte{7}, 32)
			return d.receive(t, "BADHASH", m, &fakeIntent{}).Content.URL
		}, http.StatusBadGateway, "IO.GITHUB.MATRIX_META_INTEROP.MEDIA_FAILED", "does not match its checksum (SHA-256)"},
		{"gone from Meta's hosts", func(t *testing.T) id.ContentURIString {
			m := d.mh.upload(t, randomBytes(t, 5000), mediacrypt.Image)
			mxc := d.receive(t, "GONE", m, &fakeIntent{}).Content.URL
			if err := d.mh.host.Delete(context.Background(), m.DirectPath); err != nil {
				t.Fatal(err)
			}
			return mxc
		}, http.StatusNotFound, "M_NOT_FOUND", "no longer on Meta's media hosts"},
		{"over the limit set since", func(t *testing.T) id.ContentURIString {
			mxc := d.receive(t, "BIG", d.mh.upload(t, randomBytes(t, 3<<19), mediacrypt.Image), &fakeIntent{}).Content.URL
			d.c.Config.Media.MaxSizeMiB.Image = 1
			t.Cleanup(func() { d.c.Config.Media.MaxSizeMiB.Image = 0 })
			return mxc
		}, http.StatusBadGateway, "IO.GITHUB.MATRIX_META_INTEROP.MEDIA_FAILED", "over this bridge's limit of 1 MiB for image files"},
		{"message deleted", func(t *testing.T) id.ContentURIString {
			mxc := d.receive(t, "DELETED", d.mh.upload(t, randomBytes(t, 100), mediacrypt.Image), &fakeIntent{}).Content.URL
			row, err := d.br.DB.Message.GetPartByID(context.Background(), d.ic.UserLogin.ID, ids.MakeMessageID(d.peer, d.peer, "DELETED"), "")
			if err != nil || row == nil {
				t.Fatalf("stored part: %v", err)
			}
			if err := d.br.DB.Message.Delete(context.Background(), row.RowID); err != nil {
				t.Fatal(err)
			}
			return mxc
		}, http.StatusNotFound, "M_NOT_FOUND", "message with this file was deleted"},
		{"login not on this bridge", func(t *testing.T) id.ContentURIString {
			other := directMediaID{Login: ids.MakeUserLoginID(ids.WhatsApp, jid.Interop(12, "491700000000")),
				Message: ids.MessageKey{Chat: d.peer, Sender: d.peer, StanzaID: "IMG1"}}
			raw, _ := other.mediaID()
			mxc, _ := d.c.contentURI(context.Background(), raw)
			return mxc
		}, http.StatusNotFound, "M_NOT_FOUND", "login that received this file"},
		{"not a media ID of this bridge", func(t *testing.T) id.ContentURIString {
			return id.ContentURI{Homeserver: directMediaServer, FileID: base64.RawURLEncoding.EncodeToString([]byte("\x01junk"))}.CUString()
		}, http.StatusNotFound, "M_NOT_FOUND", "not a file of this bridge"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := d.get(t, tc.prepare(t))
			code, msg := matrixError(t, body)
			if status != tc.status || code != tc.errcode || !strings.Contains(msg, tc.says) {
				t.Fatalf("HTTP %d %s %q; want %d %s saying %q", status, code, msg, tc.status, tc.errcode, tc.says)
			}
		})
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("left %v in the temporary folder", names)
	}
}

// Direct media is only for rooms without end-to-bridge encryption: in an encrypted
// room, and with direct media off, the file is uploaded as before. A file the message
// itself shows is over the limit is refused up front with the same notice either way.
func TestDirectMediaFallsBackToUpload(t *testing.T) {
	d := newDirectMediaBridge(t, sqltest.SQLite(t))
	plain := randomBytes(t, 3000)
	m := d.mh.upload(t, plain, mediacrypt.Image)

	d.encrypted = true
	intent := &fakeIntent{encrypt: true}
	part := d.receive(t, "ENC", m, intent)
	if part.Content.File == nil || part.Content.URL != "" || !bytes.Equal(intent.uploaded, plain) {
		t.Fatalf("encrypted room: url %q file %v, uploaded %d bytes", part.Content.URL, part.Content.File, len(intent.uploaded))
	}
	if meta, _ := part.DBMetadata.(*MessageMetadata); meta != nil && meta.DirectMedia != nil {
		t.Error("an uploaded file kept direct media details")
	}

	d.encrypted = false
	d.c.direct.contentURI = func(context.Context, networkid.MediaID) (id.ContentURIString, error) {
		return "", bridgev2.ErrDirectMediaNotEnabled
	}
	intent = &fakeIntent{}
	if part := d.receive(t, "NOURI", m, intent); !strings.HasPrefix(string(part.Content.URL), "mxc://test.invalid/plain-") || !bytes.Equal(intent.uploaded, plain) {
		t.Fatalf("without a URI: url %q, uploaded %d bytes", part.Content.URL, len(intent.uploaded))
	}

	d.c.direct.enabled = false
	intent = &fakeIntent{}
	if part := d.receive(t, "OFF", m, intent); !strings.HasPrefix(string(part.Content.URL), "mxc://test.invalid/plain-") {
		t.Fatalf("direct media off: url %q", part.Content.URL)
	}

	d.c.SetUseDirectMedia()
	d.c.Config.Media.MaxSizeMiB.Image = 1
	big := *m
	big.FileLength = 2 << 20
	before := d.mh.requests.Load()
	part = d.receive(t, "TOOBIG", &big, &fakeIntent{})
	if part.Content.MsgType != event.MsgNotice || !strings.Contains(part.Content.Body, "over this bridge's limit of 1 MiB") ||
		d.mh.requests.Load() != before {
		t.Fatalf("declared over the limit: %s %q", part.Content.MsgType, part.Content.Body)
	}
}

// An attachment whose first delivery did not decrypt replaces its notice with a direct
// media URI, and the stored part keeps the details Download needs.
func TestDirectMediaReplacesNotice(t *testing.T) {
	ctx := context.Background()
	d := newDirectMediaBridge(t, sqltest.SQLite(t))
	plain := randomBytes(t, 4000)
	m := d.mh.upload(t, plain, mediacrypt.Image)
	msg := &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Mimetype: proto.String("image/png"), DirectPath: proto.String(m.DirectPath),
		MediaKey: m.MediaKey, FileSha256: m.FileSHA256, FileEncSha256: m.FileEncSHA256, FileLength: proto.Uint64(m.FileLength)}}
	msgID := ids.MakeMessageID(d.peer, d.peer, "LATE")
	notice := &database.Message{BridgeID: d.br.ID, ID: msgID, MXID: "$notice", Room: d.portal.PortalKey, SenderID: ids.MakeUserID(d.peer),
		Timestamp: time.Now(), Metadata: &MessageMetadata{Undecryptable: true}}
	if err := d.br.DB.Message.Insert(ctx, notice); err != nil {
		t.Fatal(err)
	}
	evt := &simplevent.Message[*waE2E.Message]{
		EventMeta: simplevent.EventMeta{Type: bridgev2.RemoteEventMessageUpsert, PortalKey: d.portal.PortalKey,
			Sender: bridgev2.EventSender{Sender: ids.MakeUserID(d.peer)}, Timestamp: time.Now()},
		Data: msg, ID: msgID,
	}
	res, err := d.ic.replaceNotice(evt, msgconv.MetaInfo{Chat: d.peer, Sender: d.peer})(ctx, d.portal, nil, []*database.Message{notice}, msg)
	if err != nil || len(res.SubEvents) != 1 {
		t.Fatalf("upsert over the notice: %+v, %v", res, err)
	}
	edit, err := res.SubEvents[0].(bridgev2.RemoteEdit).ConvertEdit(ctx, d.portal, &fakeIntent{}, []*database.Message{notice})
	if err != nil || len(edit.ModifiedParts) != 1 {
		t.Fatalf("edit %+v, %v", edit, err)
	}
	mp := edit.ModifiedParts[0]
	meta, _ := mp.Part.Metadata.(*MessageMetadata)
	if meta == nil || meta.Undecryptable || meta.DirectMedia == nil {
		t.Fatalf("replaced part's metadata %+v", meta)
	}
	// bridgev2 saves the edited part; then the URI serves the file.
	if err := d.br.DB.Message.Update(ctx, mp.Part); err != nil {
		t.Fatal(err)
	}
	status, _, body := d.get(t, mp.Content.URL)
	if status != http.StatusOK || !bytes.Equal(body, plain) {
		t.Fatalf("download after the replacement: HTTP %d, %d bytes", status, len(body))
	}
}
