package socket

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waCert"
)

// ErrUntrustedGateway is the parent of every certificate chain failure, so a caller can
// tell "the gateway could not prove who it is" from network trouble with one errors.Is.
var ErrUntrustedGateway = errors.New("gateway certificate chain not trusted")

// The distinct reasons a chain is refused. Each wraps ErrUntrustedGateway.
var (
	ErrCertChainMalformed = fmt.Errorf("%w: malformed chain", ErrUntrustedGateway)
	ErrCertSignature      = fmt.Errorf("%w: bad signature", ErrUntrustedGateway)
	ErrCertKeyMismatch    = fmt.Errorf("%w: leaf key does not match the Noise static key", ErrUntrustedGateway)
	ErrCertExpired        = fmt.Errorf("%w: certificate expired", ErrUntrustedGateway)
	ErrCertNotYetValid    = fmt.Errorf("%w: certificate not yet valid", ErrUntrustedGateway)
)

// GenerateCertChain makes a chain for a gateway whose Noise static public key is
// serverStatic: a fresh intermediate Ed25519 key signed by root, and a leaf holding
// serverStatic signed by the intermediate. Both certificates get the same validity
// window. The intermediate's private key is discarded, because a chain is only ever
// issued for one static key.
func GenerateCertChain(root ed25519.PrivateKey, serverStatic []byte, notBefore, notAfter time.Time) (*waCert.CertChain, error) {
	if len(root) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("root key has %d bytes, want %d", len(root), ed25519.PrivateKeySize)
	}
	if len(serverStatic) != dhLen {
		return nil, fmt.Errorf("server static key has %d bytes, want %d", len(serverStatic), dhLen)
	}
	if notBefore.Unix() < 0 || notAfter.Before(notBefore) {
		return nil, fmt.Errorf("invalid validity window %s .. %s", notBefore, notAfter)
	}
	interPub, interPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate intermediate key: %w", err)
	}
	var serials [8]byte
	if _, err := rand.Read(serials[:]); err != nil {
		return nil, fmt.Errorf("failed to generate serials: %w", err)
	}
	interSerial := binary.BigEndian.Uint32(serials[:4])
	leafSerial := binary.BigEndian.Uint32(serials[4:])
	from, until := uint64(notBefore.Unix()), uint64(notAfter.Unix())

	intermediate, err := SignCertificate(root, &waCert.CertChain_NoiseCertificate_Details{
		Serial:    proto.Uint32(interSerial),
		Key:       interPub,
		NotBefore: proto.Uint64(from),
		NotAfter:  proto.Uint64(until),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to sign intermediate: %w", err)
	}
	leaf, err := SignCertificate(interPriv, &waCert.CertChain_NoiseCertificate_Details{
		Serial:       proto.Uint32(leafSerial),
		IssuerSerial: proto.Uint32(interSerial),
		Key:          bytes.Clone(serverStatic),
		NotBefore:    proto.Uint64(from),
		NotAfter:     proto.Uint64(until),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to sign leaf: %w", err)
	}
	return &waCert.CertChain{Leaf: leaf, Intermediate: intermediate}, nil
}

// SignCertificate serializes details and signs those exact bytes with key. It is
// exported so tests and the simulator can build chains that are wrong on purpose.
func SignCertificate(key ed25519.PrivateKey, details *waCert.CertChain_NoiseCertificate_Details) (*waCert.CertChain_NoiseCertificate, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("failed to marshal details: %w", err)
	}
	return &waCert.CertChain_NoiseCertificate{Details: raw, Signature: ed25519.Sign(key, raw)}, nil
}

// VerifyCertChain checks a gateway's chain against Meta's root key: the intermediate is
// signed by root, the leaf by the intermediate's key, the leaf names the intermediate as
// issuer, both are valid at now, and the leaf's key is serverStatic (the static key the
// gateway proved it holds during the Noise handshake). The error wraps one of the ErrCert
// sentinels.
func VerifyCertChain(chain *waCert.CertChain, root ed25519.PublicKey, serverStatic []byte, now time.Time) error {
	if len(root) != ed25519.PublicKeySize {
		return fmt.Errorf("root key has %d bytes, want %d", len(root), ed25519.PublicKeySize)
	}
	if chain.GetIntermediate() == nil || chain.GetLeaf() == nil {
		return fmt.Errorf("%w: leaf or intermediate missing", ErrCertChainMalformed)
	}
	inter, err := verifyCertificate(chain.GetIntermediate(), root, "intermediate")
	if err != nil {
		return err
	}
	if len(inter.GetKey()) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: intermediate key has %d bytes", ErrCertChainMalformed, len(inter.GetKey()))
	}
	leaf, err := verifyCertificate(chain.GetLeaf(), inter.GetKey(), "leaf")
	if err != nil {
		return err
	}
	if leaf.IssuerSerial == nil || inter.Serial == nil || leaf.GetIssuerSerial() != inter.GetSerial() {
		return fmt.Errorf("%w: leaf issuer serial does not name the intermediate", ErrCertChainMalformed)
	}
	for _, c := range []struct {
		name    string
		details *waCert.CertChain_NoiseCertificate_Details
	}{{"intermediate", inter}, {"leaf", leaf}} {
		if err := checkValidity(c.details, now); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	if !bytes.Equal(leaf.GetKey(), serverStatic) {
		return ErrCertKeyMismatch
	}
	return nil
}

// verifyCertificate checks the signature before parsing, so nothing unauthenticated is
// ever interpreted.
func verifyCertificate(cert *waCert.CertChain_NoiseCertificate, signer ed25519.PublicKey, name string) (*waCert.CertChain_NoiseCertificate_Details, error) {
	if len(cert.GetDetails()) == 0 || len(cert.GetSignature()) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: %s has no details or a signature of the wrong size", ErrCertChainMalformed, name)
	}
	if !ed25519.Verify(signer, cert.GetDetails(), cert.GetSignature()) {
		return nil, fmt.Errorf("%s: %w", name, ErrCertSignature)
	}
	var details waCert.CertChain_NoiseCertificate_Details
	if err := proto.Unmarshal(cert.GetDetails(), &details); err != nil {
		return nil, fmt.Errorf("%w: %s details: %w", ErrCertChainMalformed, name, err)
	}
	if details.NotBefore == nil || details.NotAfter == nil || details.Key == nil {
		return nil, fmt.Errorf("%w: %s details lack key or validity", ErrCertChainMalformed, name)
	}
	return &details, nil
}

func checkValidity(details *waCert.CertChain_NoiseCertificate_Details, now time.Time) error {
	unix := now.Unix()
	if unix < 0 {
		unix = 0
	}
	t := uint64(unix)
	switch {
	case t < details.GetNotBefore():
		return ErrCertNotYetValid
	case t > details.GetNotAfter():
		return ErrCertExpired
	}
	return nil
}
