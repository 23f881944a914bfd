package connector

import (
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
)

// Mimetypes of each kind. WhatsApp's apps play these as they are; other types of the
// same family are sent unchanged and may not play everywhere (partial support).
var (
	imageMimes = map[string]event.CapabilitySupportLevel{
		"image/jpeg": event.CapLevelFullySupported,
		"image/png":  event.CapLevelFullySupported,
		"image/*":    event.CapLevelPartialSupport,
	}
	stickerMimes = map[string]event.CapabilitySupportLevel{
		"image/webp": event.CapLevelFullySupported,
		"image/png":  event.CapLevelFullySupported,
		"image/jpeg": event.CapLevelFullySupported,
		"image/*":    event.CapLevelPartialSupport,
	}
	videoMimes = map[string]event.CapabilitySupportLevel{
		"video/mp4":  event.CapLevelFullySupported,
		"video/3gpp": event.CapLevelFullySupported,
		"video/*":    event.CapLevelPartialSupport,
	}
	audioMimes = map[string]event.CapabilitySupportLevel{
		"audio/ogg":  event.CapLevelFullySupported,
		"audio/mpeg": event.CapLevelFullySupported,
		"audio/mp4":  event.CapLevelFullySupported,
		"audio/aac":  event.CapLevelFullySupported,
		"audio/amr":  event.CapLevelFullySupported,
		"audio/*":    event.CapLevelPartialSupport,
	}
	voiceMimes = map[string]event.CapabilitySupportLevel{
		"audio/ogg": event.CapLevelFullySupported,
		"audio/*":   event.CapLevelPartialSupport,
	}
	documentMimes = map[string]event.CapabilitySupportLevel{
		"*/*": event.CapLevelFullySupported,
	}
)

// mediaFeatures declares which files the bridge sends and how large each may be
// (media.max_size_mib), so clients can refuse a file before uploading it. Audio has
// no caption on WhatsApp, and a sticker is sent as an image without one.
func mediaFeatures(f *event.RoomFeatures, limits *config.MediaConfig) {
	file := func(kind string, mimes map[string]event.CapabilitySupportLevel, caption event.CapabilitySupportLevel) *event.FileFeatures {
		ff := &event.FileFeatures{MimeTypes: mimes, Caption: caption, MaxSize: limits.MaxBytes(kind)}
		if caption.Partial() {
			ff.MaxCaptionLength = msgconv.MaxCaptionBytes
		}
		return ff
	}
	f.File = event.FileFeatureMap{
		event.MsgImage:      file(config.MediaImage, imageMimes, event.CapLevelFullySupported),
		event.CapMsgSticker: file(config.MediaImage, stickerMimes, event.CapLevelDropped),
		event.MsgVideo:      file(config.MediaVideo, videoMimes, event.CapLevelFullySupported),
		event.CapMsgGIF:     file(config.MediaVideo, videoMimes, event.CapLevelFullySupported),
		event.MsgAudio:      file(config.MediaAudio, audioMimes, event.CapLevelDropped),
		event.CapMsgVoice:   file(config.MediaAudio, voiceMimes, event.CapLevelDropped),
		event.MsgFile:       file(config.MediaDocument, documentMimes, event.CapLevelFullySupported),
	}
}
