package interop

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// MediaConn is what downloads from Meta's media hosts need (PROTOCOL.md section 7):
// GET {scheme}://{host}{directPath} with "Authorization: Bearer {Auth}", from Hosts
// only. Auth is a credential: never log it.
type MediaConn struct {
	Auth      string
	TTL       time.Duration
	Hosts     []string // host or host:port, nothing else
	FetchedAt time.Time
}

// Expired reports whether the credentials are past their TTL at now.
func (m MediaConn) Expired(now time.Time) bool {
	return m.Auth == "" || !now.Before(m.FetchedAt.Add(m.TTL))
}

// FetchMediaConn asks for media download credentials and hosts.
func (c *Client) FetchMediaConn(ctx context.Context) (MediaConn, error) {
	answer, err := c.SendIQ(ctx, buildMediaConnIQ())
	if err != nil {
		return MediaConn{}, fmt.Errorf("failed to get media_conn: %w", err)
	}
	return parseMediaConn(answer, time.Now())
}

func buildMediaConnIQ() stanza.Node {
	return stanza.Node{
		Tag:     "iq",
		Attrs:   stanza.Attrs{"type": "set", "xmlns": "w:m", "to": jid.ServerGateway},
		Content: []stanza.Node{{Tag: "media_conn"}},
	}
}

func parseMediaConn(answer stanza.Node, now time.Time) (MediaConn, error) {
	mc, ok := answer.Child("media_conn")
	if !ok {
		return MediaConn{}, fmt.Errorf("media_conn answer has no <media_conn>")
	}
	res := MediaConn{Auth: mc.Attr("auth"), FetchedAt: now}
	if res.Auth == "" {
		return MediaConn{}, fmt.Errorf("media_conn answer has no auth")
	}
	ttl, err := mc.AttrInt("ttl")
	if err != nil || ttl <= 0 || ttl > 7*24*3600 {
		return MediaConn{}, fmt.Errorf("media_conn answer has a bad ttl %q", mc.Attr("ttl"))
	}
	res.TTL = time.Duration(ttl) * time.Second
	for _, h := range mc.ChildrenByTag("host") {
		name := h.Attr("hostname")
		if !validHost(name) {
			// Only a plain host may go into the download URL; anything else could
			// point the client somewhere the gateway did not mean.
			return MediaConn{}, fmt.Errorf("media_conn answer has a bad hostname (%d bytes)", len(name))
		}
		res.Hosts = append(res.Hosts, name)
	}
	if len(res.Hosts) == 0 {
		return MediaConn{}, fmt.Errorf("media_conn answer has no host")
	}
	return res, nil
}

// validHost accepts a DNS name or IPv4 address with an optional :port.
func validHost(s string) bool {
	host, port, hasPort := strings.Cut(s, ":")
	if hasPort {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 || port[0] == '0' {
			return false
		}
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}
