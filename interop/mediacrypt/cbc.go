package mediacrypt

import (
	"crypto/cipher"
	"encoding/binary"
	"math/bits"
)

// The blobs' AES-256-CBC. crypto/cipher's CBC runs one block at a time through a call
// per block on every platform but ppc64 and s390x, which makes it the larger part of
// encrypting and decrypting media. On amd64 with AES-NI, cbc_amd64.go runs whole chunks
// in assembly instead (decryption eight blocks at a time); elsewhere, and with the
// purego build tag, crypto/cipher does it.

// newCBCEncrypter is the CBC encryption of a blob's keys.
func newCBCEncrypter(block cipher.Block, keys *Keys) cipher.BlockMode {
	if m := fastCBC(keys, false); m != nil {
		return m
	}
	return cipher.NewCBCEncrypter(block, keys.IV[:])
}

// newCBCDecrypter is the CBC decryption of a blob's keys.
func newCBCDecrypter(block cipher.Block, keys *Keys) cipher.BlockMode {
	if m := fastCBC(keys, true); m != nil {
		return m
	}
	return cipher.NewCBCDecrypter(block, keys.IV[:])
}

// aesRoundKeys256 is the AES-256 key schedule (FIPS 197 section 5.2): the 15 round
// keys of encryption, 16 bytes each, in the order AES-NI takes them.
func aesRoundKeys256(key *[32]byte) (enc [240]byte) {
	sbox := aesSbox()
	sub := func(w uint32) uint32 {
		return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 | uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
	}
	var w [60]uint32
	for i := range 8 {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := 8; i < len(w); i++ {
		t := w[i-1]
		switch i % 8 {
		case 0:
			t = sub(bits.RotateLeft32(t, 8)) ^ rcon<<24
			rcon <<= 1 // at most 0x40 for AES-256: never needs the reduction
		case 4:
			t = sub(t)
		}
		w[i] = w[i-8] ^ t
	}
	for i, x := range w {
		binary.BigEndian.PutUint32(enc[4*i:], x)
	}
	return enc
}

// aesSbox computes the AES S-box (FIPS 197 section 5.1.1): the multiplicative inverse
// in GF(2^8), walked through with 3 as generator, then the affine transformation.
func aesSbox() (s [256]byte) {
	p, q := byte(1), byte(1)
	for {
		// p times 3.
		if p&0x80 != 0 {
			p ^= p<<1 ^ 0x1b
		} else {
			p ^= p << 1
		}
		// q divided by 3, so that q stays the inverse of p.
		q ^= q << 1
		q ^= q << 2
		q ^= q << 4
		if q&0x80 != 0 {
			q ^= 0x09
		}
		s[p] = q ^ bits.RotateLeft8(q, 1) ^ bits.RotateLeft8(q, 2) ^ bits.RotateLeft8(q, 3) ^ bits.RotateLeft8(q, 4) ^ 0x63
		if p == 1 {
			break
		}
	}
	s[0] = 0x63
	return s
}
