package msgconv

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // decoders for image.Decode
	"image/jpeg"
	_ "image/png"
	"io"
)

// ThumbnailSide is the longest side of a thumbnail, in pixels.
const ThumbnailSide = 100

// MaxThumbnailSourcePixels bounds the images Thumbnail decodes (2048×2048): a decoded
// JPEG takes 1.5 to 3 bytes a pixel and a PNG usually 4, so one decode stays around
// 16 MiB. Larger images get their thumbnail from elsewhere (the Matrix event's).
const MaxThumbnailSourcePixels = 4 << 20

// thumbnailQuality is the JPEG quality of thumbnails; they are a blurry preview anyway.
const thumbnailQuality = 70

// ErrImageTooLarge is returned for an image with more than MaxThumbnailSourcePixels.
var ErrImageTooLarge = errors.New("image too large to make a thumbnail from")

// ImageSize reads the dimensions of a PNG, JPEG or GIF from its header.
func ImageSize(r io.Reader) (width, height int, err error) {
	cfg, _, err := image.DecodeConfig(r)
	if err != nil {
		return 0, 0, fmt.Errorf("failed to read image header: %w", err)
	}
	return cfg.Width, cfg.Height, nil
}

// Thumbnail decodes a PNG, JPEG or GIF (the first frame) and returns a JPEG of it whose
// longest side is at most ThumbnailSide pixels. Transparent parts become white, as
// WhatsApp shows them.
func Thumbnail(r io.ReadSeeker) ([]byte, error) {
	width, height, err := ImageSize(r)
	if err != nil {
		return nil, err
	}
	if width <= 0 || height <= 0 {
		return nil, fmt.Errorf("%w: empty image", ErrInvalid)
	}
	if int64(width)*int64(height) > MaxThumbnailSourcePixels {
		return nil, fmt.Errorf("%w (%d×%d)", ErrImageTooLarge, width, height)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("failed to rewind image: %w", err)
	}
	img, _, err := image.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("failed to decode image: %w", err)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, shrink(img, ThumbnailSide), &jpeg.Options{Quality: thumbnailQuality}); err != nil {
		return nil, fmt.Errorf("failed to encode thumbnail: %w", err)
	}
	return buf.Bytes(), nil
}

// thumbnailSamples is how many source pixels per axis are averaged into one thumbnail
// pixel at most: enough to smooth, few enough to stay fast on large images.
const thumbnailSamples = 4

// shrink scales img so that its longest side is at most side (never up), averaging a
// grid of samples from each target pixel's area and putting it on white.
func shrink(img image.Image, side int) *image.RGBA {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	dw, dh := sw, sh
	if sw > side || sh > side {
		if sw >= sh {
			dw, dh = side, max(1, sh*side/sw)
		} else {
			dw, dh = max(1, sw*side/sh), side
		}
	}
	out := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := range dh {
		y0, y1 := y*sh/dh, max((y+1)*sh/dh, y*sh/dh+1)
		for x := range dw {
			x0, x1 := x*sw/dw, max((x+1)*sw/dw, x*sw/dw+1)
			var r, g, bl, n uint64
			for sy := range min(thumbnailSamples, y1-y0) {
				py := y0 + sy*(y1-y0)/min(thumbnailSamples, y1-y0)
				for sx := range min(thumbnailSamples, x1-x0) {
					px := x0 + sx*(x1-x0)/min(thumbnailSamples, x1-x0)
					cr, cg, cb, ca := img.At(b.Min.X+px, b.Min.Y+py).RGBA()
					// Premultiplied: the uncovered part shows the white background.
					r += uint64(cr + 0xffff - ca)
					g += uint64(cg + 0xffff - ca)
					bl += uint64(cb + 0xffff - ca)
					n++
				}
			}
			out.SetRGBA(x, y, color.RGBA{R: uint8(r / n >> 8), G: uint8(g / n >> 8), B: uint8(bl / n >> 8), A: 0xff})
		}
	}
	return out
}
