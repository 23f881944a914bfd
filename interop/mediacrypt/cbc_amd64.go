//go:build amd64 && !purego

package mediacrypt

import "crypto/cipher"

var _ cipher.BlockMode = (*asmCBC)(nil)

// Implemented in cbc_amd64.s.
//
//go:noescape
func cpuHasAES() bool

//go:noescape
func invMixColumns(dst, src *[16]byte)

// cbcEncrypt256 encrypts blocks 16-byte blocks at buf in place, chaining on iv, and
// leaves the last ciphertext block in iv.
//
//go:noescape
func cbcEncrypt256(enc *[240]byte, iv *[16]byte, buf *byte, blocks int)

// cbcDecrypt256 decrypts blocks 16-byte blocks at buf in place with the decryption
// round keys dec, chaining on iv, and leaves the last ciphertext block in iv.
//
//go:noescape
func cbcDecrypt256(dec *[240]byte, iv *[16]byte, buf *byte, blocks int)

// fastCBC is the assembly CBC of keys, nil without AES-NI. It asks the CPU each time
// (CPUID, about a microsecond in a virtual machine): once a blob, nothing to cache.
func fastCBC(keys *Keys, decrypt bool) cipher.BlockMode {
	if !cpuHasAES() {
		return nil
	}
	m := &asmCBC{decrypt: decrypt, iv: keys.IV}
	m.keys = aesRoundKeys256(&keys.CipherKey)
	if decrypt {
		// The equivalent inverse cipher (FIPS 197 section 5.3.5): the round keys in
		// reverse, InvMixColumns applied to all but the first and the last.
		enc := m.keys
		copy(m.keys[:16], enc[224:])
		copy(m.keys[224:], enc[:16])
		for r := 1; r < 14; r++ {
			invMixColumns((*[16]byte)(m.keys[16*r:]), (*[16]byte)(enc[16*(14-r):]))
		}
	}
	return m
}

// asmCBC is a cipher.BlockMode over cbc_amd64.s.
type asmCBC struct {
	keys    [240]byte
	iv      [16]byte
	decrypt bool
}

func (m *asmCBC) BlockSize() int { return blockSize }

// CryptBlocks follows cipher.BlockMode: dst and src overlap entirely or not at all.
func (m *asmCBC) CryptBlocks(dst, src []byte) {
	if len(src)%blockSize != 0 {
		panic("mediacrypt: input not full blocks")
	}
	if len(dst) < len(src) {
		panic("mediacrypt: output smaller than input")
	}
	if len(src) == 0 {
		return
	}
	dst = dst[:len(src)]
	if &dst[0] != &src[0] {
		copy(dst, src)
	}
	if m.decrypt {
		cbcDecrypt256(&m.keys, &m.iv, &dst[0], len(dst)/blockSize)
	} else {
		cbcEncrypt256(&m.keys, &m.iv, &dst[0], len(dst)/blockSize)
	}
}
