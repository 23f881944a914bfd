package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// loginRefusal is why a login fails: <failure reason="CODE" [detail]/>.
type loginRefusal struct {
	code   int
	detail string
	why    string // for the log only
}

func (r *loginRefusal) Error() string { return fmt.Sprintf("login refused (%d): %s", r.code, r.why) }

// serveSocket runs a third-party connection: handshake (section 2), payload checks,
// the auth callback, then the session.
func (g *Gateway) serveSocket(w http.ResponseWriter, r *http.Request) {
	ctx := g.log.WithContext(r.Context())
	conn, payload, err := socket.Accept(ctx, w, r, socket.ServerOptions{
		StaticKey:        g.cfg.StaticKey,
		CertChain:        g.cfg.CertChain,
		HandshakeTimeout: g.cfg.Limits.HandshakeTimeout,
	})
	if err != nil {
		g.log.Debug().Err(err).Msg("Handshake failed")
		return
	}
	account, integrator, refusal := g.checkPayload(payload)
	var expires time.Time
	if refusal == nil {
		actx, cancel := context.WithTimeout(g.ctx, g.cfg.Limits.HandshakeTimeout)
		expires, refusal = g.authenticate(actx, integrator, account, string(payload.GetInteropData().GetToken()))
		cancel()
	}
	if refusal != nil {
		g.log.Info().Int("code", refusal.code).Str("why", refusal.why).Stringer("account", account).Msg("Login refused")
		attrs := stanza.Attrs{"reason": strconv.Itoa(refusal.code)}
		if refusal.detail != "" {
			attrs["detail"] = refusal.detail
		}
		if frame, err := stanza.Marshal(stanza.Node{Tag: "failure", Attrs: attrs}); err == nil {
			wctx, cancel := context.WithTimeout(g.ctx, g.cfg.Limits.WriteTimeout)
			_ = conn.WriteFrame(wctx, frame)
			cancel()
		}
		_ = conn.Close()
		return
	}
	readReceipts := payload.GetInteropData().GetEnableReadReceipts()
	now := g.now()
	if err := g.st.UpsertAccount(g.ctx, gwstore.Account{JID: account, Integrator: integrator.ID,
		ReadReceipts: readReceipts, LastSeen: now}); err != nil {
		g.log.Err(err).Msg("Failed to record account")
		_ = conn.CloseNow()
		return
	}
	hasKeys, err := g.st.HasKeys(g.ctx, account)
	if err != nil {
		g.log.Err(err).Msg("Failed to check keys")
		_ = conn.CloseNow()
		return
	}
	s := g.newSession(account, conn)
	s.thirdParty, s.integrator, s.readReceipts = true, integrator.ID, readReceipts
	s.run(!hasKeys, expires)
}

// checkPayload applies the ClientPayload rules: product of this network (405), a
// registered integrator (403), a valid number (403) in the EEA when required (403
// region).
func (g *Gateway) checkPayload(p *waWa6.ClientPayload) (jid.JID, Integrator, *loginRefusal) {
	if p.GetProduct() != g.cfg.Product {
		return jid.JID{}, Integrator{}, &loginRefusal{code: 405, why: "product " + p.GetProduct().String()}
	}
	data := p.GetInteropData()
	if data == nil {
		return jid.JID{}, Integrator{}, &loginRefusal{code: 403, why: "no interopData"}
	}
	if data.GetAccountID() > 999 {
		return jid.JID{}, Integrator{}, &loginRefusal{code: 403, why: "integrator id out of range"}
	}
	in, ok := g.integrators[uint16(data.GetAccountID())]
	if !ok {
		return jid.JID{}, Integrator{}, &loginRefusal{code: 403, why: "unknown integrator"}
	}
	number := strconv.FormatUint(p.GetUsername(), 10)
	if p.GetUsername() == 0 || len(number) > 15 || p.GetDevice() != 0 {
		return jid.JID{}, in, &loginRefusal{code: 403, why: "bad username or device"}
	}
	account := jid.Interop(in.ID, number)
	if g.cfg.RequireEEA && !IsEEANumber(number) {
		return account, in, &loginRefusal{code: 403, detail: errcode.ReasonRegion, why: "number outside the EEA"}
	}
	return account, in, nil
}

// authenticate asks the provider whether the token is valid (section 9).
func (g *Gateway) authenticate(ctx context.Context, in Integrator, account jid.JID, token string) (time.Time, *loginRefusal) {
	if token == "" {
		return time.Time{}, &loginRefusal{code: 401, why: "no token"}
	}
	expires, err := g.callbacks.Auth(ctx, in.CallbackBase, in.CallbackSecret, account.String(), token)
	switch {
	case errors.Is(err, callback.ErrInvalidToken):
		return time.Time{}, &loginRefusal{code: 401, why: "token refused"}
	case err != nil:
		g.log.Warn().Err(err).Uint16("integrator", in.ID).Msg("Auth callback failed")
		return time.Time{}, &loginRefusal{code: 503, why: "auth callback failed"}
	case !expires.IsZero() && !expires.After(g.now()):
		return time.Time{}, &loginRefusal{code: 401, why: "token expired"}
	}
	if !expires.IsZero() {
		// The session timer runs on the real clock; translate from the gateway's.
		expires = time.Now().Add(expires.Sub(g.now()))
	}
	return expires, nil
}

// ConnectDevice connects a simulated Meta device in-process: the returned FrameConn
// carries marshalled stanzas (no Noise, no token; the device is trusted), and the
// device then speaks the same protocol as a third-party account. The gateway sends
// <success t [new]/> first. The connection lives until either side closes it; ctx
// only bounds the connecting.
func (g *Gateway) ConnectDevice(ctx context.Context, device jid.JID) (interop.FrameConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if device.Server != g.cfg.Server {
		return nil, fmt.Errorf("%w: %s", ErrWrongServer, device)
	}
	ok, err := g.st.DeviceExists(ctx, device)
	if err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownDevice, device)
	}
	hasKeys, err := g.st.HasKeys(ctx, device)
	if err != nil {
		return nil, err
	}
	if !g.track() {
		return nil, ErrClosed
	}
	client, server := newPipe()
	s := g.newSession(device, server)
	go func() {
		defer g.wg.Done()
		s.run(!hasKeys, time.Time{})
	}()
	return client, nil
}
