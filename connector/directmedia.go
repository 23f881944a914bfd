package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/mediaproxy"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
)

// Direct media (issue 5): with `direct_media.enabled: true` in the bridge config,
// bridgev2 serves a media proxy on the appservice listener and calls SetUseDirectMedia.
// An attachment from a Meta user then becomes an mxc:// URI of the bridge's own media
// server name instead of an upload: its media ID names the login, chat, message and
// part, nothing secret, and bridgev2 signs it, so that it cannot be forged. The keys
// and hashes stay in the message's metadata in bridgev2's message table
// (MessageMetadata.DirectMedia). When the homeserver asks for the file, Download looks
// the message up and fetches the blob from Meta's media hosts with the same checks as
// an upload (media_in.go): only hosts media_conn names, the size limit per kind, the
// MAC and both hashes verified into a temporary file before a byte is served.
//
// Rooms with end-to-bridge encryption keep uploads: a direct media URI would serve the
// plaintext to anyone holding it, and the homeserver would store it unencrypted.

// directMedia is the connector's direct media state.
type directMedia struct {
	enabled bool
	// contentURI and encrypted stand in for the Matrix connector in tests.
	contentURI func(context.Context, networkid.MediaID) (id.ContentURIString, error)
	encrypted  func(context.Context, id.RoomID) (bool, error)
}

// SetUseDirectMedia is called by bridgev2 before Start when direct media is enabled.
func (c *InteropConnector) SetUseDirectMedia() {
	c.direct.enabled = true
	if c.Bridge != nil {
		c.Bridge.Log.Info().Msg("Direct media enabled: attachments from Meta users in unencrypted rooms are served on demand, not uploaded")
	}
}

// contentURI makes the direct media mxc:// URI of mediaID.
func (c *InteropConnector) contentURI(ctx context.Context, mediaID networkid.MediaID) (id.ContentURIString, error) {
	if c.direct.contentURI != nil {
		return c.direct.contentURI(ctx, mediaID)
	}
	if c.Bridge == nil || c.Bridge.Matrix == nil {
		return "", bridgev2.ErrDirectMediaNotEnabled
	}
	return c.Bridge.Matrix.GenerateContentURI(ctx, mediaID)
}

// roomEncrypted tells whether events in roomID are encrypted, as bridgev2's uploads
// decide it. A Matrix connector that cannot tell counts as encrypted: the upload path
// is always safe.
func (c *InteropConnector) roomEncrypted(ctx context.Context, roomID id.RoomID) (bool, error) {
	if c.direct.encrypted != nil {
		return c.direct.encrypted(ctx, roomID)
	}
	mx, ok := realMatrix(c.Bridge)
	if !ok || mx.StateStore == nil || mx.Config == nil {
		return true, nil
	}
	if mx.Config.Encryption.Require {
		return true, nil
	}
	encrypted, err := mx.StateStore.IsEncrypted(ctx, roomID)
	if err != nil {
		return false, fmt.Errorf("failed to check if the room is encrypted: %w", err)
	}
	return encrypted, nil
}

// directMediaID is what a direct media ID names: the message part holding the
// attachment, as one login received it.
type directMediaID struct {
	Login   networkid.UserLoginID
	Message ids.MessageKey
	Part    networkid.PartID
}

// directMediaIDVersion starts every media ID, so the format can change later.
const directMediaIDVersion = 1

// errInvalidMediaID is wrapped by every parse error of a direct media ID.
var errInvalidMediaID = errors.New("invalid direct media id")

// mediaID encodes d compactly, since the mxc:// URI bridgev2 makes of it (base64,
// with a signature) may be at most 255 characters: a version byte, then login, chat,
// sender, stanza id and part, each as a length byte and its bytes. The sender is left
// empty when it is the chat, as in every 1:1 message from the peer.
func (d directMediaID) mediaID() (networkid.MediaID, error) {
	chat := d.Message.Chat.ToUser().String()
	sender := d.Message.Sender.ToUser().String()
	if sender == chat {
		sender = ""
	}
	fields := []string{string(d.Login), chat, sender, d.Message.StanzaID, string(d.Part)}
	out := make([]byte, 1, 1+len(fields)+len(d.Login)+len(chat)+len(sender)+len(d.Message.StanzaID)+len(d.Part))
	out[0] = directMediaIDVersion
	for _, f := range fields {
		if len(f) > 255 {
			return nil, fmt.Errorf("%w: a part is %d bytes long", errInvalidMediaID, len(f))
		}
		out = append(out, byte(len(f)))
		out = append(out, f...)
	}
	return networkid.MediaID(out), nil
}

// parseDirectMediaID is the inverse of mediaID. Only the canonical encoding of a valid
// login, chat, sender and message is accepted.
func parseDirectMediaID(raw networkid.MediaID) (directMediaID, error) {
	if len(raw) == 0 || raw[0] != directMediaIDVersion {
		return directMediaID{}, fmt.Errorf("%w: unknown version", errInvalidMediaID)
	}
	rest := raw[1:]
	var fields [5]string
	for i := range fields {
		if len(rest) == 0 || int(rest[0]) > len(rest)-1 {
			return directMediaID{}, fmt.Errorf("%w: truncated", errInvalidMediaID)
		}
		n := int(rest[0])
		fields[i], rest = string(rest[1:1+n]), rest[1+n:]
	}
	if len(rest) != 0 {
		return directMediaID{}, fmt.Errorf("%w: trailing bytes", errInvalidMediaID)
	}
	login, chatStr, senderStr, stanzaID, part := fields[0], fields[1], fields[2], fields[3], fields[4]
	if _, _, err := ids.ParseUserLoginID(networkid.UserLoginID(login)); err != nil {
		return directMediaID{}, fmt.Errorf("%w: %w", errInvalidMediaID, err)
	}
	chat, err := ids.ParsePortalID(networkid.PortalID(chatStr))
	if err != nil {
		return directMediaID{}, fmt.Errorf("%w: %w", errInvalidMediaID, err)
	}
	sender := chat
	if senderStr != "" {
		if sender, err = ids.ParseUserID(networkid.UserID(senderStr)); err != nil {
			return directMediaID{}, fmt.Errorf("%w: %w", errInvalidMediaID, err)
		}
	}
	if stanzaID == "" || !utf8.ValidString(stanzaID) || !utf8.ValidString(part) {
		return directMediaID{}, fmt.Errorf("%w: bad message or part id", errInvalidMediaID)
	}
	d := directMediaID{Login: networkid.UserLoginID(login), Message: ids.MessageKey{Chat: chat, Sender: sender, StanzaID: stanzaID},
		Part: networkid.PartID(part)}
	if again, err := d.mediaID(); err != nil || string(again) != string(raw) {
		return directMediaID{}, fmt.Errorf("%w: not in canonical form", errInvalidMediaID)
	}
	return d, nil
}

// directMediaTarget is the message part an attachment is converted for.
type directMediaTarget struct {
	conn *InteropConnector
	id   directMediaID
}

// newMediaUploader is the uploader of the attachment of one message part: a direct
// media URI when the admin enabled direct media, an upload otherwise.
func (ic *InteropClient) newMediaUploader(portal *bridgev2.Portal, intent bridgev2.MatrixAPI, msgID networkid.MessageID, partID networkid.PartID) *mediaUploader {
	u := &mediaUploader{fetcher: ic.mediaFetcher(), portal: portal, intent: intent}
	if ic.Main.direct.enabled {
		if key, err := ids.ParseMessageID(msgID); err == nil {
			u.direct = &directMediaTarget{conn: ic.Main, id: directMediaID{Login: ic.UserLogin.ID, Message: key, Part: partID}}
		}
	}
	return u
}

// existingPartID is the part an edit replaces: the first one.
func existingPartID(existing []*database.Message) networkid.PartID {
	if len(existing) == 0 {
		return ""
	}
	return existing[0].PartID
}

// directIncoming bridges the attachment as a direct media URI when it can: ok is
// false when the attachment is to be uploaded instead (direct media off, an encrypted
// room, a URI that cannot be made). What the message itself shows cannot be bridged
// (too big, no keys) is refused as an upload would refuse it.
func (u *mediaUploader) directIncoming(ctx context.Context, m *msgconv.IncomingMedia) (up *msgconv.UploadedMedia, ok bool, err error) {
	if u.direct == nil {
		return nil, false, nil
	}
	log := zerolog.Ctx(ctx)
	if _, err := u.fetcher.precheck(m); err != nil {
		return nil, true, err
	}
	encrypted, err := u.direct.conn.roomEncrypted(ctx, u.portal.MXID)
	if err != nil {
		log.Warn().Err(err).Msg("Uploading incoming media: could not tell if the room is encrypted")
		return nil, false, nil
	} else if encrypted {
		log.Debug().Msg("Uploading incoming media: direct media is not used in encrypted rooms")
		return nil, false, nil
	}
	mediaID, err := u.direct.id.mediaID()
	var mxc id.ContentURIString
	if err == nil {
		mxc, err = u.direct.conn.contentURI(ctx, mediaID)
	}
	if err != nil {
		log.Warn().Err(err).Msg("Uploading incoming media: could not make a direct media URI")
		return nil, false, nil
	}
	log.Debug().Str("media_type", m.Type.String()).Uint64("declared_size", m.FileLength).Msg("Bridging incoming media as direct media")
	return &msgconv.UploadedMedia{URL: mxc, Size: int64(min(m.FileLength, 1<<62)),
		Thumbnail: u.uploadThumbnail(ctx, m.Thumbnail), DBMetadata: &MessageMetadata{DirectMedia: directMediaInfo(m)}}, true, nil
}

// errDirectMediaFailed is the answer when Meta's media hosts did not give a file that
// passed the checks: the homeserver sees a bad gateway, with the reason.
var errDirectMediaFailed = mautrix.RespError{
	ErrCode:    "IO.GITHUB.MATRIX_META_INTEROP.MEDIA_FAILED",
	Err:        "Failed to fetch the file from Meta",
	StatusCode: http.StatusBadGateway,
}

// Download serves a direct media URI: it finds the message part the media ID names,
// then returns a file that is filled, when the homeserver reads it, with the verified
// plaintext fetched from Meta's media hosts through the login that received it.
func (c *InteropConnector) Download(ctx context.Context, mediaID networkid.MediaID, _ map[string]string) (mediaproxy.GetMediaResponse, error) {
	parsed, err := parseDirectMediaID(mediaID)
	if err != nil {
		return nil, mautrix.MNotFound.WithMessage("This is not a file of this bridge")
	}
	msgID := parsed.Message.ID()
	log := zerolog.Ctx(ctx).With().Str("login_id", string(parsed.Login)).Str("message_id", string(msgID)).Logger()
	ctx = log.WithContext(ctx)
	if c.Bridge == nil || c.Bridge.DB == nil {
		return nil, mautrix.MUnknown.WithMessage("The bridge is not running").WithStatus(http.StatusServiceUnavailable)
	}
	login, err := c.Bridge.GetExistingUserLoginByID(ctx, parsed.Login)
	if err != nil {
		log.Err(err).Msg("Failed to load the login of a direct media download")
		return nil, mautrix.MUnknown.WithMessage("The bridge could not load the login that received this file").WithStatus(http.StatusInternalServerError)
	}
	ic, ok := clientOf(login)
	if !ok {
		return nil, mautrix.MNotFound.WithMessage("The login that received this file is no longer on this bridge")
	}
	part, err := c.Bridge.DB.Message.GetPartByID(ctx, parsed.Login, msgID, parsed.Part)
	if err != nil {
		log.Err(err).Msg("Failed to load the message of a direct media download")
		return nil, mautrix.MUnknown.WithMessage("The bridge could not load the message of this file").WithStatus(http.StatusInternalServerError)
	}
	if part == nil || part.Room != ids.MakePortalKey(parsed.Message.Chat, parsed.Login) {
		return nil, mautrix.MNotFound.WithMessage("The message with this file was deleted")
	}
	meta, _ := part.Metadata.(*MessageMetadata)
	if meta == nil || meta.DirectMedia == nil {
		return nil, mautrix.MNotFound.WithMessage("This message has no file the bridge serves")
	}
	m, err := meta.DirectMedia.incoming()
	if err != nil {
		log.Err(err).Msg("Stored direct media details are unreadable")
		return nil, mautrix.MNotFound.WithMessage("This message has no file the bridge serves")
	}
	return &mediaproxy.GetMediaResponseFile{Callback: func(w *os.File) (*mediaproxy.FileMeta, error) {
		return ic.fetchDirectMedia(ctx, m, w)
	}}, nil
}

// clientOf is the login's interop client, if it is one of this connector's logins.
func clientOf(login *bridgev2.UserLogin) (*InteropClient, bool) {
	if login == nil {
		return nil, false
	}
	ic, ok := login.Client.(*InteropClient)
	return ic, ok && ic != nil
}

// fetchDirectMedia downloads and verifies m into a temporary file beside w, the file
// bridgev2's media proxy serves, and moves it over w only once every check passed, so
// that nothing unverified is ever served.
func (ic *InteropClient) fetchDirectMedia(ctx context.Context, m *msgconv.IncomingMedia, w *os.File) (*mediaproxy.FileMeta, error) {
	log := zerolog.Ctx(ctx).With().Str("media_type", m.Type.String()).Uint64("declared_size", m.FileLength).Logger()
	start := time.Now()
	f := ic.mediaFetcher()
	// The same folder, so that the verified file can be renamed over w.
	f.tempDir = filepath.Dir(w.Name())
	file, err := f.fetch(ctx, m)
	if err != nil {
		log.Warn().Err(err).Msg("Failed to fetch direct media")
		return nil, directMediaError(err)
	}
	name := file.Name()
	size := int64(-1)
	if st, err := file.Stat(); err == nil {
		size = st.Size()
	}
	_ = file.Close()
	meta := &mediaproxy.FileMeta{ContentType: m.Mimetype}
	// The proxy serves ReplacementFile and then removes w's path: with the verified
	// file renamed to that path, nothing is left behind.
	if err := os.Rename(name, w.Name()); err == nil {
		meta.ReplacementFile = w.Name()
	} else if err := copyFile(w, name); err != nil {
		log.Err(err).Msg("Failed to hand verified direct media to the media proxy")
		return nil, mautrix.MUnknown.WithMessage("The bridge could not serve the file").WithStatus(http.StatusInternalServerError)
	}
	log.Debug().Int64("size", size).Dur("took", time.Since(start)).Msg("Served direct media")
	return meta, nil
}

// copyFile copies the file at name into w and removes it.
func copyFile(w *os.File, name string) error {
	defer func() { _ = os.Remove(name) }()
	src, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("failed to open verified file: %w", err)
	}
	defer func() { _ = src.Close() }()
	if _, err := io.Copy(w, src); err != nil {
		return fmt.Errorf("failed to copy verified file: %w", err)
	}
	return nil
}

// directMediaError turns a fetch failure into the homeserver's answer: not found for
// a blob Meta no longer has, a bad gateway naming the reason for the rest.
func directMediaError(err error) error {
	reason := "the bridge hit an internal error"
	var mf *msgconv.MediaFailure
	if errors.As(err, &mf) && mf.Reason != "" {
		reason = mf.Reason
	}
	if errors.Is(err, errMediaGone) {
		return mautrix.MNotFound.WithMessage("The file is no longer on Meta's media hosts")
	}
	return errDirectMediaFailed.WithMessage("Failed to fetch the file from Meta: %s", reason)
}
