package mediacrypt

import "crypto/cipher"

// The blobs' AES-256-CBC is crypto/cipher's: this project does not carry its own AES.

// newCBCEncrypter is the CBC encryption of a blob's keys.
func newCBCEncrypter(block cipher.Block, keys *Keys) cipher.BlockMode {
	return cipher.NewCBCEncrypter(block, keys.IV[:])
}

// newCBCDecrypter is the CBC decryption of a blob's keys.
func newCBCDecrypter(block cipher.Block, keys *Keys) cipher.BlockMode {
	return cipher.NewCBCDecrypter(block, keys.IV[:])
}
