//go:build !amd64 || purego

package mediacrypt

import "crypto/cipher"

// fastCBC: crypto/cipher's CBC is the only one here.
func fastCBC(*Keys, bool) cipher.BlockMode { return nil }
