package interop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// NewID returns a fresh stanza id: 16 random bytes as uppercase hex (PROTOCOL.md
// section 3), unique for far longer than the 30 days the protocol asks.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it aborts the program instead)
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// SendIQ sends an iq and waits for its answer. It fills in a missing id (NewID) and
// a missing to (the gateway). The answer with type="result" is returned; one with
// type="error" gives an *errcode.Error built from its <error code text/> (the answer
// node is returned too). No answer within Config.IQTimeout gives ErrIQTimeout and drops
// the connection, which counts as dead; a drop while waiting gives ErrDisconnected.
// Safe for concurrent use.
func (c *Client) SendIQ(ctx context.Context, iq stanza.Node) (stanza.Node, error) {
	cn := c.current()
	if cn == nil {
		return stanza.Node{}, ErrNotConnected
	}
	return c.sendIQOn(ctx, cn, iq)
}

func (c *Client) sendIQOn(ctx context.Context, cn *conn, iq stanza.Node) (stanza.Node, error) {
	if iq.Tag != "iq" {
		return stanza.Node{}, fmt.Errorf("SendIQ needs an <iq>, got <%s>", iq.Tag)
	}
	iq.Attrs = withDefaultAttrs(iq.Attrs, "to", jid.ServerGateway)
	id := iq.Attrs["id"]
	key := pendingKey{kind: answerIQ, id: id}
	ch, err := cn.expect(key)
	if err != nil {
		return stanza.Node{}, err
	}
	if err := cn.write(ctx, iq); err != nil {
		cn.forget(key)
		return stanza.Node{}, err
	}
	answer, err := cn.await(ctx, key, ch, c.cfg.IQTimeout,
		fmt.Errorf("%w (xmlns %q)", ErrIQTimeout, iq.Attr("xmlns")))
	if err != nil {
		return stanza.Node{}, err
	}
	if answer.Attr("type") == "error" {
		return answer, errorFromChild(answer)
	}
	return answer, nil
}

// withDefaultAttrs copies attrs (the caller's map is never written) and fills an id
// and one more default attribute when they are missing.
func withDefaultAttrs(attrs stanza.Attrs, key, value string) stanza.Attrs {
	out := make(stanza.Attrs, len(attrs)+2)
	maps.Copy(out, attrs)
	if out["id"] == "" {
		out["id"] = NewID()
	}
	if key != "" && out[key] == "" {
		out[key] = value
	}
	return out
}

// errorFromChild reads <error code text [reason] [retry_after]/> of an error answer.
// A missing <error> is still an error: errcode.Parse turns the missing code into 500.
func errorFromChild(n stanza.Node) *errcode.Error {
	e, _ := n.Child("error")
	return errcode.Parse(e.Attr("code"), e.Attr("text"), e.Attr("reason"), e.Attr("retry_after"))
}
