package kit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// Direct media: bridgev2 serves the bridge's own mxc:// URIs as a Matrix media server
// (federation media API) on the appservice listener. Synapse fetches remote media
// only over federation, that is over TLS, from the server named in the URI. The kit
// names the bridge's media server by an IP literal with a port (no .well-known or
// SRV lookup then) and puts a TLS front with a self-signed certificate there, which
// forwards to the bridge's plain HTTP listener; Synapse is told not to verify
// federation certificates and not to block private addresses for federation, which it
// does by default. (ip_range_whitelist is not enough: Synapse checks a server name
// that is an IP literal against the blocklist alone.)

// directMediaSynapseConfig lets Synapse fetch federation media from the TLS front.
const directMediaSynapseConfig = `
federation_verify_certificates: false
federation_ip_range_blacklist: []
`

// startMediaFront serves TLS on a free port of 127.0.0.1 and forwards every request
// to target. It returns the server name to give the bridge ("127.0.0.1:port").
func startMediaFront(target string) (*http.Server, string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, "", fmt.Errorf("failed to parse the bridge's address: %w", err)
	}
	cert, err := selfSignedCert()
	if err != nil {
		return nil, "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("failed to listen for the media front: %w", err)
	}
	srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(u), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return srv, l.Addr().String(), nil
}

// selfSignedCert is a certificate for 127.0.0.1, valid for a day.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("failed to generate a TLS key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("failed to make a TLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
