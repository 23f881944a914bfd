package simuser

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
)

// providerImage encrypts plain as an image hosted by the provider at path and returns
// the message a third-party provider sends for it (section 7: url absolute,
// directPath its path).
func providerImage(t *testing.T, p *provider, path string, plain []byte, corrupt bool) *waE2E.Message {
	t.Helper()
	key, err := mediacrypt.NewMediaKey()
	must(t, err)
	var blob bytes.Buffer
	res, err := mediacrypt.Encrypt(&blob, bytes.NewReader(plain), key, mediacrypt.Image)
	must(t, err)
	b := blob.Bytes()
	if corrupt {
		b[len(b)/2] ^= 0x01
	}
	url := p.host(path, b)
	return &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Url: proto.String(url), DirectPath: proto.String(path),
		Mimetype: proto.String("image/jpeg"), FileSha256: res.FileSHA256, FileEncSha256: res.FileEncSHA256,
		FileLength: proto.Uint64(res.FileLength), MediaKey: key, Caption: proto.String("from the provider")}}
}

// TestSection7_MediaWithThirdParty moves media both ways between a simulated user and
// a third-party account: the third party downloads the Meta user's blob from the
// media hosts with its media_conn token, and the Meta user's media arrive through the
// media proxy from the provider's origin, verified, or refused with the reason.
func TestSection7_MediaWithThirdParty(t *testing.T) {
	e := newEnv(t)
	alice := e.user("491701111111", 1)
	tp := e.thirdParty("491709999999")
	ctx := ctxLong(t)

	// Meta user → third party: the blob is on Meta's media hosts.
	plain := randomBytes(t, 20_000)
	sent := e.send(alice, tp.jid, Content{Kind: ContentImage, Text: "for you", Media: &MediaSpec{Data: plain, Mimetype: "image/jpeg"}})
	got := tp.next(t)
	img := got.Message.GetImageMessage()
	if img == nil || img.GetDirectPath() != sent.Media.DirectPath || img.GetCaption() != "for you" {
		t.Fatalf("third party got %v", got.Message)
	}
	mc, err := tp.acc.Client().FetchMediaConn(ctx)
	must(t, err)
	download := func(auth string) (int, []byte) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+mc.Hosts[0]+img.GetDirectPath(), nil)
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+auth)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		must(t, err)
		return resp.StatusCode, body
	}
	if code, _ := download("not-a-token"); code != http.StatusUnauthorized {
		t.Fatalf("download with a bad token: %d", code)
	}
	code, blob := download(mc.Auth)
	if code != http.StatusOK {
		t.Fatalf("download: %d", code)
	}
	dec, err := mediacrypt.DecryptBytes(blob, mediacrypt.Expected{MediaKey: img.MediaKey, Type: mediacrypt.Image,
		FileSHA256: img.FileSha256, FileEncSHA256: img.FileEncSha256, FileLength: img.GetFileLength()})
	if err != nil || !bytes.Equal(dec, plain) {
		t.Fatalf("third party could not decrypt the Meta user's image: %v", err)
	}

	// Third party → Meta user: fetched through the media proxy and verified.
	theirs := randomBytes(t, 30_000)
	id := tp.send(t, alice, providerImage(t, e.prov, "/media/1", theirs, false))
	it := e.waitMsg(alice, id)
	mi := it.Data.Media
	if it.Kind != KindMedia || mi.Status != MediaOK || !bytes.Equal(readFile(t, mi.Path), theirs) || it.Data.Text != "from the provider" {
		t.Fatalf("alice got %+v %+v", it, mi)
	}

	refusals := []struct {
		name string
		msg  func() *waE2E.Message
		kind string
		code int
	}{
		{"bad MAC", func() *waE2E.Message { return providerImage(t, e.prov, "/media/2", theirs, true) }, "bad_mac", 0},
		{"wrong origin", func() *waE2E.Message {
			m := providerImage(t, e.prov, "/media/3", theirs, false)
			m.ImageMessage.Url = proto.String("http://media.elsewhere.example/media/3")
			return m
		}, "wrong_origin", 0},
		{"missing at the provider", func() *waE2E.Message {
			m := providerImage(t, e.prov, "/media/4", theirs, false)
			m.ImageMessage.Url = proto.String(e.prov.srv.URL + "/media/gone")
			return m
		}, "http_status", 404},
		{"bad hash", func() *waE2E.Message {
			m := providerImage(t, e.prov, "/media/5", theirs, false)
			m.ImageMessage.FileSha256 = make([]byte, 32)
			return m
		}, "bad_hash", 0},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			id := tp.send(t, alice, r.msg())
			mi := e.waitMsg(alice, id).Data.Media
			if mi.Status != MediaFailed || mi.ErrorKind != r.kind || mi.HTTPCode != r.code || mi.Path != "" || mi.Error == "" {
				t.Fatalf("media %+v, want refusal %s", mi, r.kind)
			}
		})
	}
}

// TestSection7_HostFaultsReachReceiver makes the media hosts misbehave and checks the
// receiving simulated user refuses the blob with the right reason, then accepts it
// again once the fault is gone.
func TestSection7_HostFaultsReachReceiver(t *testing.T) {
	e := newEnv(t)
	alice := e.user("491701111111", 1)
	bob := e.user("491702222222", 1)
	cases := []struct {
		fault media.Fault
		kind  string
	}{
		{media.FaultCorrupt, "bad_mac"},
		{media.FaultTruncate, "bad_blob"},
		{media.FaultExtend, "bad_blob"},
		{media.FaultUnavailable, "unavailable"},
		{media.FaultNone, ""},
	}
	for _, c := range cases {
		t.Run(c.fault.String(), func(t *testing.T) {
			e.host.SetFault("", c.fault)
			defer e.host.ClearFaults()
			sent := e.send(alice, bob, Content{Kind: ContentDocument, Media: &MediaSpec{Size: 1000}})
			mi := e.waitMsg(bob, sent.ID).Data.Media
			if c.kind == "" {
				if mi.Status != MediaOK || mi.SHA256 != sent.Media.SHA256 {
					t.Fatalf("media without a fault: %+v", mi)
				}
				return
			}
			if mi.Status != MediaFailed || mi.ErrorKind != c.kind {
				t.Fatalf("media %+v, want %s", mi, c.kind)
			}
		})
	}
	// The inbox keeps the verdict: a second look gives the same item.
	items, err := e.mgr.Inbox(context.Background(), bob, Filter{Kinds: []Kind{KindMedia}})
	must(t, err)
	if len(items) != len(cases) || items[0].Data.Media.ErrorKind != "bad_mac" || items[len(items)-1].Data.Media.Status != MediaOK {
		t.Fatalf("inbox media items: %+v", items)
	}
}
