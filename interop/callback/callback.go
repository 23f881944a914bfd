// Package callback signs and verifies the HTTP requests Meta's gateway makes to a
// provider (PROTOCOL.md section 9: the JSON auth and push callbacks; section 7: the
// media proxy's fetches). Both sides use it: the simulator signs, the bridge verifies.
//
// It is protocol-level only: it must not import Matrix code, the bridge or the
// simulator, and it knows nothing about what the callbacks mean.
package callback

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of a signed request.
const (
	HeaderTimestamp = "X-Interop-Timestamp"
	HeaderSignature = "X-Interop-Signature"
)

// MaxSkew is how far a request's timestamp may be from the verifier's clock, either
// way. A larger window would let a captured request be replayed for longer.
const MaxSkew = 5 * time.Minute

// DefaultMaxBody bounds a callback body when VerifyRequest is given no limit. The
// JSON callbacks are a JID, a token and a number: a few hundred bytes.
const DefaultMaxBody = 64 << 10

const signaturePrefix = "sha256="

// Refusals of the Verify functions. Each is wrapped with details; branch with
// errors.Is. None of the details contain the secret or the body.
var (
	ErrMissingHeaders = errors.New("request lacks " + HeaderTimestamp + " or " + HeaderSignature)
	ErrBadTimestamp   = errors.New("timestamp is not unix seconds")
	ErrStale          = errors.New("timestamp too far from now")
	ErrBadSignature   = errors.New("signature does not match")
	ErrBodyTooLarge   = errors.New("request body over the size limit")
)

// Sign returns the X-Interop-Signature of a JSON callback sent at timestamp:
// "sha256=" and the hex HMAC-SHA256 of timestamp + "\n" + body.
func Sign(secret []byte, timestamp string, body []byte) string {
	return signaturePrefix + hex.EncodeToString(jsonMAC(secret, timestamp, body))
}

func jsonMAC(secret []byte, timestamp string, body []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'\n'})
	mac.Write(body)
	return mac.Sum(nil)
}

// MediaSignature returns the X-Interop-Signature of a media fetch of path (the URL's
// escaped path, without the query) at timestamp: "sha256=" and the hex HMAC-SHA256 of
// "GET\n{path}\n{timestamp}".
func MediaSignature(secret []byte, path, timestamp string) string {
	return signaturePrefix + hex.EncodeToString(mediaMAC(secret, path, timestamp))
}

func mediaMAC(secret []byte, path, timestamp string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("GET\n" + path + "\n" + timestamp))
	return mac.Sum(nil)
}

// SignRequest sets the timestamp and signature headers of a JSON callback whose body
// is exactly body (the caller sends those bytes as r's body).
func SignRequest(r *http.Request, secret, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderSignature, Sign(secret, ts, body))
}

// SignMediaFetch sets the timestamp and signature headers of a media fetch: a GET of
// r.URL, signed over its escaped path.
func SignMediaFetch(r *http.Request, secret []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderSignature, MediaSignature(secret, r.URL.EscapedPath(), ts))
}

// Verify checks a JSON callback's headers against its body: the timestamp is within
// MaxSkew of now and the signature matches under secret.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time) error {
	if err := checkHeaders(timestamp, signature, now); err != nil {
		return err
	}
	return checkMAC(jsonMAC(secret, timestamp, body), signature)
}

// VerifyRequest reads r's body (at most maxBody bytes; 0 means DefaultMaxBody) and
// verifies it as a JSON callback signed with secret. It returns the body and also puts
// it back as r.Body, so later handlers can read it again.
func VerifyRequest(r *http.Request, secret []byte, now time.Time, maxBody int64) ([]byte, error) {
	_, body, err := VerifyRequestAny(r, [][]byte{secret}, now, maxBody)
	return body, err
}

// VerifyRequestAny is VerifyRequest for a provider that holds several secrets (one per
// network): it returns the index of the secret that verified the request. The headers
// and the size are checked before the body is read, so a refused request costs little.
func VerifyRequestAny(r *http.Request, secrets [][]byte, now time.Time, maxBody int64) (int, []byte, error) {
	ts, sig := r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature)
	if err := checkHeaders(ts, sig, now); err != nil {
		return -1, nil, err
	}
	body, err := readBody(r, maxBody)
	if err != nil {
		return -1, nil, err
	}
	for i, secret := range secrets {
		if checkMAC(jsonMAC(secret, ts, body), sig) == nil {
			return i, body, nil
		}
	}
	return -1, nil, ErrBadSignature
}

// VerifyMediaFetch checks a media fetch (PROTOCOL.md section 7): a GET whose timestamp
// is within MaxSkew of now and whose signature over r.URL's escaped path matches under
// secret. The query is not signed, so it must not select what is served.
func VerifyMediaFetch(r *http.Request, secret []byte, now time.Time) error {
	_, err := VerifyMediaFetchAny(r, [][]byte{secret}, now)
	return err
}

// VerifyMediaFetchAny is VerifyMediaFetch with several secrets; it returns the index of
// the one that verified the fetch.
func VerifyMediaFetchAny(r *http.Request, secrets [][]byte, now time.Time) (int, error) {
	ts, sig := r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature)
	if err := checkHeaders(ts, sig, now); err != nil {
		return -1, err
	}
	// HEAD is how a client may probe a blob; only GET is what the proxy signs.
	if r.Method != http.MethodGet {
		return -1, fmt.Errorf("%w: method %s is not signed", ErrBadSignature, r.Method)
	}
	path := r.URL.EscapedPath()
	for i, secret := range secrets {
		if checkMAC(mediaMAC(secret, path, ts), sig) == nil {
			return i, nil
		}
	}
	return -1, ErrBadSignature
}

func checkHeaders(timestamp, signature string, now time.Time) error {
	if timestamp == "" || signature == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || timestamp[0] == '+' || timestamp[0] == '-' {
		return fmt.Errorf("%w: %.20q", ErrBadTimestamp, timestamp)
	}
	// Compare in seconds: time.Duration would overflow for absurd timestamps.
	if d := now.Unix() - sec; d > int64(MaxSkew/time.Second) || d < -int64(MaxSkew/time.Second) {
		return fmt.Errorf("%w: off by %ds", ErrStale, d)
	}
	return nil
}

// checkMAC compares in constant time; the hex is decoded first so that the comparison
// does not depend on letter case.
func checkMAC(want []byte, signature string) error {
	hexSig, ok := strings.CutPrefix(signature, signaturePrefix)
	if !ok {
		return fmt.Errorf("%w: not a sha256= signature", ErrBadSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || !hmac.Equal(want, got) {
		return ErrBadSignature
	}
	return nil
}

func readBody(r *http.Request, maxBody int64) ([]byte, error) {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if r.ContentLength > maxBody {
		return nil, fmt.Errorf("%w: Content-Length %d, limit %d", ErrBodyTooLarge, r.ContentLength, maxBody)
	}
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read callback body: %w", err)
	}
	if int64(len(body)) > maxBody {
		return nil, fmt.Errorf("%w: limit %d", ErrBodyTooLarge, maxBody)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}
