package simuser

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
)

// onMessage decrypts a message and records it in the inbox inside the decryption's
// transaction; then, outside it, sends the delivery receipt (and the read receipt
// when the user reads automatically) and fetches its media.
func (d *device) onMessage(ctx context.Context, node stanza.Node) {
	var got *interop.DecryptedMessage
	var item *Item
	delivered := false
	d.persist(ctx, "message "+node.Attr("id"), func() error {
		// An attempt whose transaction failed rolled back, and the next one delivers
		// again (replacing got); one that committed and then failed to ack finds a
		// duplicate next time and keeps what the first delivered.
		outcome, err := d.acc.HandleMessage(ctx, node, func(ctx context.Context, m *interop.DecryptedMessage) error {
			it := itemFromMessage(m)
			it.User, it.Device = d.jid.ToUser(), d.jid
			if err := d.m.inbox.add(ctx, it); err != nil {
				return err
			}
			got, item = m, it
			return nil
		})
		delivered = delivered || outcome == interop.OutcomeDelivered
		return err
	})
	if got == nil {
		return
	}
	d.m.inbox.notify()
	if !delivered || got.Message == nil {
		return
	}
	d.acknowledge(ctx, got.Info)
	if mi := item.Data.Media; mi != nil {
		d.fetchMedia(ctx, got.Info, got.Message, mi)
		if err := d.m.inbox.setData(ctx, item.Seq, item.Data); err != nil {
			d.log.Err(err).Msg("Failed to record a media fetch")
		}
		d.m.inbox.notify()
	}
}

// acknowledge sends the delivery receipt every device sends, and the read receipt
// device 0 sends for a user that reads automatically.
func (d *device) acknowledge(ctx context.Context, info interop.MessageInfo) {
	r := interop.Receipt{Chat: info.Chat, IDs: []string{info.ID}, Type: interop.ReceiptDelivered}
	if info.IsGroup {
		r.Participant = info.Sender
	}
	if err := d.acc.Client().SendReceipt(ctx, r); err != nil {
		d.log.Debug().Err(err).Msg("Failed to send a delivery receipt")
	}
	if d.jid.Device != 0 {
		return
	}
	if on, err := d.m.inbox.autoRead(ctx, d.jid); err != nil {
		d.log.Err(err).Msg("Failed to read the auto-read setting")
	} else if on {
		r.Type, r.T = interop.ReceiptRead, d.m.cfg.Now()
		if err := d.acc.Client().SendReceipt(ctx, r); err != nil {
			d.log.Debug().Err(err).Msg("Failed to send a read receipt")
		}
	}
}

// itemFromMessage decodes a received message for the inbox.
func itemFromMessage(m *interop.DecryptedMessage) *Item {
	it := &Item{ID: m.Info.ID, Chat: m.Info.Chat, Sender: m.Info.Sender, Timestamp: m.Info.Timestamp}
	it.Data.EncType = m.EncType
	if u := m.Undecryptable; u != nil {
		it.Kind = KindError
		it.Data.GaveUp = u.GaveUp
		if u.Err != nil {
			it.Data.Error = u.Err.Error()
		}
		return it
	}
	msg := m.Message
	switch {
	case msg.ReactionMessage != nil:
		r := msg.ReactionMessage
		it.Kind = KindReaction
		it.Data.Target = keyOf(r.GetKey())
		it.Data.Text = r.GetText()
		it.Data.Removed = r.GetText() == ""
	case msg.ProtocolMessage != nil:
		pm := msg.ProtocolMessage
		it.Data.Target = keyOf(pm.GetKey())
		switch pm.GetType() {
		case waE2E.ProtocolMessage_REVOKE:
			it.Kind = KindRevoke
		case waE2E.ProtocolMessage_MESSAGE_EDIT:
			it.Kind = KindEdit
			decodeText(&it.Data, pm.GetEditedMessage())
		default:
			it.Kind = KindUnknown
		}
	case msg.ImageMessage != nil, msg.VideoMessage != nil, msg.AudioMessage != nil, msg.DocumentMessage != nil:
		it.Kind = KindMedia
		it.Data.Media = mediaInfoOf(msg, m.Info.MediaType)
		decodeContext(&it.Data, mediaContextInfo(msg))
		it.Data.Text = mediaCaption(msg)
	case msg.LocationMessage != nil:
		l := msg.LocationMessage
		it.Kind = KindLocation
		it.Data.Location = &Location{Latitude: l.GetDegreesLatitude(), Longitude: l.GetDegreesLongitude(),
			Name: l.GetName(), Address: l.GetAddress()}
		decodeContext(&it.Data, l.GetContextInfo())
	case msg.Conversation != nil, msg.ExtendedTextMessage != nil:
		it.Kind = KindText
		decodeText(&it.Data, msg)
	default:
		it.Kind = KindUnknown
	}
	return it
}

// decodeText reads a conversation or an extendedTextMessage.
func decodeText(d *ItemData, msg *waE2E.Message) {
	if ext := msg.GetExtendedTextMessage(); ext != nil {
		d.Text, d.Extended = ext.GetText(), true
		decodeContext(d, ext.GetContextInfo())
		return
	}
	d.Text = msg.GetConversation()
}

func decodeContext(d *ItemData, ci *waE2E.ContextInfo) {
	if ci == nil {
		return
	}
	d.Mentions = append(d.Mentions, ci.GetMentionedJid()...)
	if ci.GetStanzaId() != "" {
		q := &Quoted{ID: ci.GetStanzaId(), Participant: ci.GetParticipant()}
		if qm := ci.GetQuotedMessage(); qm != nil {
			q.Text = qm.GetConversation()
			if q.Text == "" {
				q.Text = qm.GetExtendedTextMessage().GetText()
			}
		}
		d.ReplyTo = q
	}
}

func keyOf(k *waE2E.MessageKey) *MessageKey {
	if k == nil {
		return nil
	}
	return &MessageKey{ID: k.GetId(), RemoteJID: k.GetRemoteJid(), FromMe: k.GetFromMe(), Participant: k.GetParticipant()}
}

func mediaContextInfo(msg *waE2E.Message) *waE2E.ContextInfo {
	switch {
	case msg.ImageMessage != nil:
		return msg.ImageMessage.GetContextInfo()
	case msg.VideoMessage != nil:
		return msg.VideoMessage.GetContextInfo()
	case msg.AudioMessage != nil:
		return msg.AudioMessage.GetContextInfo()
	}
	return msg.GetDocumentMessage().GetContextInfo()
}

func mediaCaption(msg *waE2E.Message) string {
	switch {
	case msg.ImageMessage != nil:
		return msg.ImageMessage.GetCaption()
	case msg.VideoMessage != nil:
		return msg.VideoMessage.GetCaption()
	case msg.DocumentMessage != nil:
		return msg.DocumentMessage.GetCaption()
	}
	return ""
}

// mediaInfoOf reads a media message's metadata; the fetch fills in the rest.
func mediaInfoOf(msg *waE2E.Message, mediaType string) *MediaInfo {
	mi := &MediaInfo{Type: mediaType, Status: MediaPending}
	switch {
	case msg.ImageMessage != nil:
		m := msg.ImageMessage
		mi.Mimetype, mi.Width, mi.Height, mi.FileLength = m.GetMimetype(), m.GetWidth(), m.GetHeight(), m.GetFileLength()
		mi.DirectPath, mi.URL = m.GetDirectPath(), m.GetUrl()
	case msg.VideoMessage != nil:
		m := msg.VideoMessage
		mi.Mimetype, mi.Width, mi.Height, mi.FileLength = m.GetMimetype(), m.GetWidth(), m.GetHeight(), m.GetFileLength()
		mi.Seconds, mi.DirectPath, mi.URL = m.GetSeconds(), m.GetDirectPath(), m.GetUrl()
	case msg.AudioMessage != nil:
		m := msg.AudioMessage
		mi.Mimetype, mi.Seconds, mi.FileLength = m.GetMimetype(), m.GetSeconds(), m.GetFileLength()
		mi.DirectPath, mi.URL = m.GetDirectPath(), m.GetUrl()
	case msg.DocumentMessage != nil:
		m := msg.DocumentMessage
		mi.Mimetype, mi.FileName, mi.Title, mi.FileLength = m.GetMimetype(), m.GetFileName(), m.GetTitle(), m.GetFileLength()
		mi.PageCount, mi.DirectPath, mi.URL = m.GetPageCount(), m.GetDirectPath(), m.GetUrl()
	}
	return mi
}

// expectedOf is what verification needs from a media message.
func expectedOf(msg *waE2E.Message, mediaType string) (mediacrypt.Expected, error) {
	t, err := mediacrypt.ParseMediaType(mediaType)
	if err != nil {
		return mediacrypt.Expected{}, err
	}
	exp := mediacrypt.Expected{Type: t}
	switch {
	case msg.ImageMessage != nil:
		m := msg.ImageMessage
		exp.MediaKey, exp.FileSHA256, exp.FileEncSHA256, exp.FileLength = m.MediaKey, m.FileSha256, m.FileEncSha256, m.GetFileLength()
	case msg.VideoMessage != nil:
		m := msg.VideoMessage
		exp.MediaKey, exp.FileSHA256, exp.FileEncSHA256, exp.FileLength = m.MediaKey, m.FileSha256, m.FileEncSha256, m.GetFileLength()
	case msg.AudioMessage != nil:
		m := msg.AudioMessage
		exp.MediaKey, exp.FileSHA256, exp.FileEncSHA256, exp.FileLength = m.MediaKey, m.FileSha256, m.FileEncSha256, m.GetFileLength()
	case msg.DocumentMessage != nil:
		m := msg.DocumentMessage
		exp.MediaKey, exp.FileSHA256, exp.FileEncSHA256, exp.FileLength = m.MediaKey, m.FileSha256, m.FileEncSha256, m.GetFileLength()
	}
	return exp, nil
}

// errNoSource: nowhere to fetch the media from (no URL or directPath, or no proxy or
// host configured for it).
var errNoSource = errors.New("no source to fetch the media from")

// fetchMedia downloads a message's blob (third-party media through the proxy, Meta
// users' media from the media hosts), verifies it and records the result in mi.
func (d *device) fetchMedia(ctx context.Context, info interop.MessageInfo, msg *waE2E.Message, mi *MediaInfo) {
	f, err := d.download(ctx, info, msg, mi)
	if err == nil {
		mi.SHA256, mi.Size, mi.Path, err = d.keep(f)
	}
	if err != nil {
		mi.Status, mi.Error = MediaFailed, err.Error()
		mi.ErrorKind, mi.HTTPCode = mediaErrorKind(err)
		d.log.Debug().Err(err).Str("message_id", info.ID).Msg("Media fetch failed")
		return
	}
	mi.Status = MediaOK
}

func (d *device) download(ctx context.Context, info interop.MessageInfo, msg *waE2E.Message, mi *MediaInfo) (*os.File, error) {
	exp, err := expectedOf(msg, mi.Type)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", media.ErrBadMessage, err)
	}
	if info.Sender.IsInterop() {
		in, ok := d.integrator(info.Sender)
		if !ok || d.m.cfg.Proxy == nil || mi.URL == "" {
			return nil, errNoSource
		}
		return d.m.cfg.Proxy.Fetch(ctx, in, mi.URL, exp)
	}
	if d.m.cfg.Media == nil || mi.DirectPath == "" {
		return nil, errNoSource
	}
	rc, _, err := d.m.cfg.Media.Open(ctx, mi.DirectPath)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	f, err := mediacrypt.DecryptToFile(d.m.cfg.MediaDir, rc, exp)
	if err != nil {
		return nil, media.ClassifyError(err)
	}
	return f, nil
}

func (d *device) integrator(sender jid.JID) (integ gateway.Integrator, ok bool) {
	id, ok := sender.IntegratorID()
	if !ok {
		return integ, false
	}
	return d.m.gw.Integrator(id)
}

// keep hashes the verified plaintext and, with Config.MediaDir, keeps it under its
// SHA-256; the temporary file is removed either way.
func (d *device) keep(f *os.File) (sum string, size int64, path string, err error) {
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	h := sha256.New()
	var w io.Writer = h
	var tmp *os.File
	if dir := d.m.cfg.MediaDir; dir != "" {
		if tmp, err = os.CreateTemp(dir, ".media-*"); err != nil {
			return "", 0, "", fmt.Errorf("failed to keep media: %w", err)
		}
		defer func() {
			_ = tmp.Close()
			if err != nil {
				_ = os.Remove(tmp.Name())
			}
		}()
		w = io.MultiWriter(h, tmp)
	}
	if size, err = io.Copy(w, f); err != nil {
		return "", 0, "", fmt.Errorf("failed to read media: %w", err)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if tmp != nil {
		path = filepath.Join(d.m.cfg.MediaDir, sum)
		if err = os.Rename(tmp.Name(), path); err != nil {
			return "", 0, "", fmt.Errorf("failed to keep media: %w", err)
		}
	}
	return sum, size, path, nil
}

// mediaErrorKind names a fetch failure for the inbox (see MediaInfo.ErrorKind).
func mediaErrorKind(err error) (string, int) {
	var se *media.HTTPStatusError
	switch {
	case errors.As(err, &se):
		return "http_status", se.Code
	case errors.Is(err, media.ErrWrongOrigin):
		return "wrong_origin", 0
	case errors.Is(err, media.ErrTooLarge):
		return "too_large", 0
	case errors.Is(err, media.ErrBadMAC):
		return "bad_mac", 0
	case errors.Is(err, media.ErrBadHash):
		return "bad_hash", 0
	case errors.Is(err, media.ErrBadBlob):
		return "bad_blob", 0
	case errors.Is(err, media.ErrBadMessage):
		return "bad_message", 0
	case errors.Is(err, media.ErrNotFound):
		return "not_found", 0
	case errors.Is(err, media.ErrUnavailable):
		return "unavailable", 0
	case errors.Is(err, media.ErrUnreachable):
		return "unreachable", 0
	case errors.Is(err, errNoSource):
		return "no_source", 0
	}
	return "failed", 0
}

// onGroupNotification records a group change. After a member left or was removed
// the Account itself starts a new sender key for this device's next group message
// (section 6).
func (d *device) onGroupNotification(ctx context.Context, e *interop.IncomingNotification) {
	gc, ok := e.Info.(*interop.GroupChange)
	if !ok {
		d.log.Debug().AnErr("parse_error", e.Err).Msg("Malformed group notification")
		return
	}
	change := &GroupChange{Action: gc.Action, Subject: gc.Subject, Description: gc.Description}
	for _, p := range gc.Participants {
		change.Participants = append(change.Participants, p.JID.String())
	}
	d.record(ctx, &Item{Kind: KindGroup, Chat: gc.Group, Sender: gc.Actor, Timestamp: gc.Time, Data: ItemData{Group: change}})
}
