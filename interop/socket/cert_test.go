package socket

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waCert"
)

// testNow is the fixed clock of every test, so validity windows are exact.
var testNow = time.Unix(1_764_000_000, 0)

func mustEd25519(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("failed to generate ed25519 key: %v", err)
	}
	return pub, priv
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("failed to read random bytes: %v", err)
	}
	return b
}

func mustSign(t testing.TB, key ed25519.PrivateKey, d *waCert.CertChain_NoiseCertificate_Details) *waCert.CertChain_NoiseCertificate {
	t.Helper()
	cert, err := SignCertificate(key, d)
	if err != nil {
		t.Fatalf("failed to sign: %v", err)
	}
	return cert
}

// handChain builds a chain from parts so each test case can break exactly one thing.
type handChain struct {
	rootSigner  ed25519.PrivateKey // signs the intermediate
	interKey    ed25519.PublicKey  // published in the intermediate
	interSigner ed25519.PrivateKey // signs the leaf
	interSerial uint32
	issuer      uint32
	leafKey     []byte
	interFrom   time.Time
	interUntil  time.Time
	leafFrom    time.Time
	leafUntil   time.Time
}

func (h handChain) build(t testing.TB) *waCert.CertChain {
	t.Helper()
	return &waCert.CertChain{
		Intermediate: mustSign(t, h.rootSigner, &waCert.CertChain_NoiseCertificate_Details{
			Serial: proto.Uint32(h.interSerial), Key: h.interKey,
			NotBefore: proto.Uint64(uint64(h.interFrom.Unix())), NotAfter: proto.Uint64(uint64(h.interUntil.Unix())),
		}),
		Leaf: mustSign(t, h.interSigner, &waCert.CertChain_NoiseCertificate_Details{
			Serial: proto.Uint32(2), IssuerSerial: proto.Uint32(h.issuer), Key: h.leafKey,
			NotBefore: proto.Uint64(uint64(h.leafFrom.Unix())), NotAfter: proto.Uint64(uint64(h.leafUntil.Unix())),
		}),
	}
}

func TestVerifyCertChain(t *testing.T) {
	rootPub, rootPriv := mustEd25519(t)
	_, otherRoot := mustEd25519(t)
	interPub, interPriv := mustEd25519(t)
	_, otherInter := mustEd25519(t)
	static := randomBytes(t, 32)
	good := handChain{
		rootSigner: rootPriv, interKey: interPub, interSigner: interPriv,
		interSerial: 7, issuer: 7, leafKey: static,
		interFrom: testNow.Add(-time.Hour), interUntil: testNow.Add(time.Hour),
		leafFrom: testNow.Add(-time.Hour), leafUntil: testNow.Add(time.Hour),
	}
	edit := func(f func(h *handChain)) *waCert.CertChain {
		h := good
		f(&h)
		return h.build(t)
	}
	garbageDetails := good.build(t)
	garbageDetails.Leaf = &waCert.CertChain_NoiseCertificate{
		Details: []byte{0xff, 0xff, 0xff}, Signature: ed25519.Sign(interPriv, []byte{0xff, 0xff, 0xff}),
	}
	shortInterKey := edit(func(h *handChain) { h.interKey = h.interKey[:16] })
	truncatedSig := good.build(t)
	truncatedSig.Leaf.Signature = truncatedSig.Leaf.Signature[:10]

	tests := []struct {
		name  string
		chain *waCert.CertChain
		want  error
	}{
		{"valid", good.build(t), nil},
		{"valid at the exact bounds", edit(func(h *handChain) {
			h.interFrom, h.leafUntil = testNow, testNow
		}), nil},
		{"intermediate signed by another root", edit(func(h *handChain) { h.rootSigner = otherRoot }), ErrCertSignature},
		{"leaf signed by another intermediate", edit(func(h *handChain) { h.interSigner = otherInter }), ErrCertSignature},
		{"leaf key is not the server static", edit(func(h *handChain) { h.leafKey = randomBytes(t, 32) }), ErrCertKeyMismatch},
		{"leaf expired", edit(func(h *handChain) { h.leafUntil = testNow.Add(-time.Second) }), ErrCertExpired},
		{"intermediate expired", edit(func(h *handChain) { h.interUntil = testNow.Add(-time.Second) }), ErrCertExpired},
		{"leaf not yet valid", edit(func(h *handChain) { h.leafFrom = testNow.Add(time.Second) }), ErrCertNotYetValid},
		{"intermediate not yet valid", edit(func(h *handChain) { h.interFrom = testNow.Add(time.Second) }), ErrCertNotYetValid},
		{"issuer serial mismatch", edit(func(h *handChain) { h.issuer = 8 }), ErrCertChainMalformed},
		{"no leaf", &waCert.CertChain{Intermediate: good.build(t).Intermediate}, ErrCertChainMalformed},
		{"empty chain", &waCert.CertChain{}, ErrCertChainMalformed},
		{"nil chain", nil, ErrCertChainMalformed},
		{"leaf details not a protobuf", garbageDetails, ErrCertChainMalformed},
		{"intermediate key not ed25519", shortInterKey, ErrCertChainMalformed},
		{"truncated signature", truncatedSig, ErrCertChainMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyCertChain(tt.chain, rootPub, static, testNow)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
			if !errors.Is(err, ErrUntrustedGateway) {
				t.Fatalf("error %v does not wrap ErrUntrustedGateway", err)
			}
		})
	}
}

func TestGenerateCertChain(t *testing.T) {
	rootPub, rootPriv := mustEd25519(t)
	static := randomBytes(t, 32)
	chain, err := GenerateCertChain(rootPriv, static, testNow.Add(-time.Minute), testNow.Add(time.Minute))
	if err != nil {
		t.Fatalf("failed to generate: %v", err)
	}
	if err := VerifyCertChain(chain, rootPub, static, testNow); err != nil {
		t.Fatalf("generated chain does not verify: %v", err)
	}
	if err := VerifyCertChain(chain, rootPub, static, testNow.Add(2*time.Minute)); !errors.Is(err, ErrCertExpired) {
		t.Fatalf("want expiry after the window, got %v", err)
	}
	// The chain must survive the wire: the client verifies what it parsed, not the
	// server's in-memory value.
	raw, err := proto.Marshal(chain)
	if err != nil {
		t.Fatalf("failed to marshal: %v", err)
	}
	var parsed waCert.CertChain
	if err := proto.Unmarshal(raw, &parsed); err != nil {
		t.Fatalf("failed to unmarshal: %v", err)
	}
	if err := VerifyCertChain(&parsed, rootPub, static, testNow); err != nil {
		t.Fatalf("chain does not verify after a round trip: %v", err)
	}

	bad := []struct {
		name     string
		root     ed25519.PrivateKey
		static   []byte
		from, to time.Time
	}{
		{"short root", rootPriv[:10], static, testNow, testNow},
		{"short static", rootPriv, static[:31], testNow, testNow},
		{"window backwards", rootPriv, static, testNow, testNow.Add(-time.Second)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := GenerateCertChain(tt.root, tt.static, tt.from, tt.to); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
