package interop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// SendOptions adjust one send.
type SendOptions struct {
	// MaxAttempts overrides RetryPolicy.MaxAttempts for this message (0: the policy's).
	MaxAttempts int
}

// SendResult describes an accepted message, for the bridge's bookkeeping and metrics.
type SendResult struct {
	ID        string
	Timestamp time.Time // the gateway's, from the ack (zero when it gave none)
	Type      string
	MediaType string
	// Devices the message was addressed to: those encrypted for (1:1), or every member
	// device (group).
	Devices []jid.JID
	// Distributions is how many devices were given our sender key (group).
	Distributions int
	// Attempts is how many times the stanza was sent; Refusals the codes of the
	// refusals that were retried, in order (a 429 then a 409 gives [429 409]).
	Attempts int
	Refusals []int
	// IdentityChanged lists devices whose identity key changed while starting
	// sessions (a SafetyNumberChanged event was emitted for each).
	IdentityChanged []jid.JID
}

// SendMessage encrypts msg for every device of the user to and sends it with the id
// (NewID when empty), retrying refusals as PROTOCOL.md section 10 says: 409 refreshes
// the device list and sends to every current device (RetryPolicy.MaxDeviceRefreshes
// times at most), 412 uploads keys and sends again, 429 waits retry_after and sends
// the same stanza again until ctx ends, 500/503 and transport errors back off (1 s
// doubling to 5 min) until ctx ends or RetryPolicy.MaxAttempts. Other refusals (400,
// 401, 403, 404, 406, 413) return at once: errors.As(err, &*errcode.Error) gives the
// code and reason.
//
// Before anything is written, the ratchet steps and the copy kept for retry receipts
// commit in one store transaction: a crash after that can make the message go
// unsent, never reuse a message key.
func (a *Account) SendMessage(ctx context.Context, to jid.JID, id string, msg *waE2E.Message, opts SendOptions) (SendResult, error) {
	if a.insideDeliver(ctx) {
		return SendResult{}, ErrInsideDeliver
	}
	if to.User == "" || to.IsGroup() {
		return SendResult{}, fmt.Errorf("cannot send a 1:1 message to %q", to)
	}
	to = to.ToUser()
	if to == a.own.ToUser() {
		return SendResult{}, errors.New("cannot send a message to the account itself")
	}
	content, plaintext, err := encodeContent(msg)
	if err != nil {
		return SendResult{}, err
	}
	if id == "" {
		id = NewID()
	}
	res := SendResult{ID: id, Type: content.Type, MediaType: content.MediaType}
	prepare := func(ctx context.Context, refresh bool) (stanza.Node, error) {
		return a.prepareDirect(ctx, to, id, plaintext, content, refresh, &res)
	}
	if err := a.sendLoop(ctx, id, opts, prepare, &res); err != nil {
		return res, err
	}
	return res, nil
}

func encodeContent(msg *waE2E.Message) (ContentAttrs, []byte, error) {
	content, err := Classify(msg)
	if err != nil {
		return content, nil, err
	}
	plaintext, err := proto.Marshal(msg)
	if err != nil {
		return content, nil, fmt.Errorf("failed to marshal message: %w", err)
	}
	return content, plaintext, nil
}

// prepareDirect encrypts for every device of to and keeps the copy, in one
// transaction under the user's lock, and builds the stanza.
func (a *Account) prepareDirect(ctx context.Context, to jid.JID, id string, plaintext []byte, content ContentAttrs, refresh bool, res *SendResult) (stanza.Node, error) {
	lists, err := a.devicesOf(ctx, []jid.JID{to}, refresh)
	if err != nil {
		return stanza.Node{}, err
	}
	devices := lists[to]
	if len(devices) == 0 {
		return stanza.Node{}, fmt.Errorf("%w: %s", ErrNoDevices, to)
	}
	ctx, unlock := a.locks.lock(ctx, userKey(to))
	defer unlock()
	ready, err := a.ensureSessions(ctx, devices, res)
	if err != nil {
		return stanza.Node{}, err
	}
	if len(ready) == 0 {
		return stanza.Node{}, fmt.Errorf("%w: no keys for any device of %s", ErrNoDevices, to)
	}
	var parts []signal.EncryptedPart
	err = a.st.DoTxn(ctx, func(ctx context.Context) error {
		if parts, err = a.encryptAll(ctx, ready, plaintext); err != nil {
			return err
		}
		return a.keep(ctx, to, id, plaintext)
	})
	if err != nil {
		return stanza.Node{}, err
	}
	res.Devices = ready
	out := OutgoingMessage{ID: id, To: to.String(), Content: content, PHash: signal.ParticipantHash(ready), Parts: parts}
	return out.Node(), nil
}

// encryptAll encrypts for devices that all have a session. The caller holds their
// users' locks, so none can vanish, and runs it inside its own transaction: the
// signal package releases its locks before that commits, which is safe only because
// every ratchet step of this account goes through the Account's locks.
func (a *Account) encryptAll(ctx context.Context, devices []jid.JID, plaintext []byte) ([]signal.EncryptedPart, error) {
	parts, missing, err := a.mgr.EncryptForDevices(ctx, devices, plaintext)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %v lost its session while locked", signal.ErrNoSession, missing)
	}
	return parts, nil
}

func (a *Account) keep(ctx context.Context, chat jid.JID, id string, plaintext []byte) error {
	err := a.st.PutSentMessage(ctx, &store.SentMessage{Chat: chat, ID: id, Plaintext: plaintext, SentAt: a.now()})
	if err != nil {
		return fmt.Errorf("failed to keep a copy of the message: %w", err)
	}
	return nil
}

// ensureSessions starts sessions with the devices that have none, from one prekey
// fetch, all in one store transaction (a group's first message starts hundreds, and a
// commit per session cost 3-7 ms more each on PostgreSQL). Devices the gateway has no
// keys for, or whose bundle does not verify, are left out of the result. The caller
// holds the devices' users' locks: as for encryptAll, that is what makes running the
// signal package inside this transaction safe.
func (a *Account) ensureSessions(ctx context.Context, devices []jid.JID, res *SendResult) ([]jid.JID, error) {
	var missing []jid.JID
	for _, d := range devices {
		ok, err := a.mgr.HasSession(ctx, d)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return devices, nil
	}
	bundles, err := a.client.FetchPreKeys(ctx, missing)
	if err != nil {
		return nil, err
	}
	log := a.logger(ctx)
	skip := make(map[jid.JID]bool)
	var changed []jid.JID
	err = a.st.DoTxn(ctx, func(ctx context.Context) error {
		for _, d := range missing {
			b, ok := bundles[d]
			if !ok || b.Err != nil {
				log.Warn().Stringer("device", d).AnErr("refusal", b.Err).Msg("Gateway has no keys for device, leaving it out")
				skip[d] = true
				continue
			}
			// An invalid bundle fails its signature check before anything is written,
			// so skipping it leaves nothing of it in the transaction.
			idChanged, err := a.mgr.ProcessBundle(ctx, d, bundleFromWire(b))
			if errors.Is(err, signal.ErrInvalidBundle) {
				log.Warn().Err(err).Stringer("device", d).Msg("Invalid prekey bundle, leaving device out")
				skip[d] = true
				continue
			} else if err != nil {
				return fmt.Errorf("failed to start session with %s: %w", d, err)
			}
			if idChanged {
				changed = append(changed, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Told only once the new identities are committed.
	for _, d := range changed {
		res.IdentityChanged = append(res.IdentityChanged, d)
		a.emit(&SafetyNumberChanged{User: d.ToUser(), Device: d})
	}
	return slices.DeleteFunc(slices.Clone(devices), func(d jid.JID) bool { return skip[d] }), nil
}

// SendGroupMessage sends msg to a group: one skmsg for all, and our sender key 1:1
// (a pkmsg/msg whose Message holds only senderKeyDistributionMessage) to each member
// device that does not hold it yet. members are the group's users (devices are looked
// up; our own user is left out); phash covers every member device. A device is
// recorded as holding the key only after the gateway accepted the message. The retry
// policy and the commit-before-write rule are those of SendMessage.
func (a *Account) SendGroupMessage(ctx context.Context, group jid.JID, members []jid.JID, id string, msg *waE2E.Message, opts SendOptions) (SendResult, error) {
	if a.insideDeliver(ctx) {
		return SendResult{}, ErrInsideDeliver
	}
	if !group.IsGroup() {
		return SendResult{}, fmt.Errorf("%q is not a group", group)
	}
	var users []jid.JID
	for _, m := range members {
		u := m.ToUser()
		if u.User == "" || u.IsGroup() {
			return SendResult{}, fmt.Errorf("group member %q is not a user", m)
		}
		if u != a.own.ToUser() && !slices.Contains(users, u) {
			users = append(users, u)
		}
	}
	if len(users) == 0 {
		return SendResult{}, fmt.Errorf("%w: the group has no other members", ErrNoDevices)
	}
	content, plaintext, err := encodeContent(msg)
	if err != nil {
		return SendResult{}, err
	}
	if id == "" {
		id = NewID()
	}
	res := SendResult{ID: id, Type: content.Type, MediaType: content.MediaType}
	var distributed []jid.JID
	var gen uint64
	prepare := func(ctx context.Context, refresh bool) (n stanza.Node, err error) {
		n, distributed, gen, err = a.prepareGroup(ctx, group, users, id, plaintext, content, refresh, &res)
		return n, err
	}
	if err := a.sendLoop(ctx, id, opts, prepare, &res); err != nil {
		return res, err
	}
	if len(distributed) > 0 && a.groups.current(group) == gen {
		if err := a.mgr.MarkSenderKeyDelivered(ctx, group, distributed); err != nil {
			// They get the key again with the next message; nothing is lost.
			a.logger(ctx).Warn().Err(err).Msg("Failed to record sender key holders")
		}
	}
	return res, nil
}

func (a *Account) prepareGroup(ctx context.Context, group jid.JID, users []jid.JID, id string, plaintext []byte, content ContentAttrs, refresh bool, res *SendResult) (stanza.Node, []jid.JID, uint64, error) {
	lists, err := a.devicesOf(ctx, users, refresh)
	if err != nil {
		return stanza.Node{}, nil, 0, err
	}
	var all []jid.JID
	for _, u := range users {
		all = append(all, lists[u]...)
	}
	if len(all) == 0 {
		return stanza.Node{}, nil, 0, fmt.Errorf("%w: no member of %s has devices", ErrNoDevices, group)
	}
	// The group lock first, then users' locks: nobody holding a user lock waits for a
	// group lock, so this order cannot deadlock.
	ctx, unlockGroup := a.locks.lock(ctx, groupKey(group))
	defer unlockGroup()
	gen := a.groups.current(group)
	lacking, err := a.mgr.DevicesLackingSenderKey(ctx, group, all)
	if err != nil {
		return stanza.Node{}, nil, 0, err
	}
	ctx, unlockUsers := a.locks.lock(ctx, usersKeys(lacking)...)
	defer unlockUsers()
	ready, err := a.ensureSessions(ctx, lacking, res)
	if err != nil {
		return stanza.Node{}, nil, 0, err
	}
	var skmsg []byte
	var parts []signal.EncryptedPart
	err = a.st.DoTxn(ctx, func(ctx context.Context) error {
		var dist []byte
		if skmsg, dist, err = a.mgr.GroupEncrypt(ctx, group, plaintext); err != nil {
			return err
		}
		skdm, err := proto.Marshal(&waE2E.Message{SenderKeyDistributionMessage: &waE2E.SenderKeyDistributionMessage{
			GroupId: proto.String(group.String()), AxolotlSenderKeyDistributionMessage: dist,
		}})
		if err != nil {
			return fmt.Errorf("failed to marshal sender key distribution: %w", err)
		}
		if len(ready) > 0 {
			if parts, err = a.encryptAll(ctx, ready, skdm); err != nil {
				return err
			}
		}
		// The kept copy carries the distribution too (concatenated protobuf encodings
		// merge), so a retry answer lets a device that lacked the key read later skmsgs.
		return a.keep(ctx, group, id, append(slices.Clip(plaintext), skdm...))
	})
	if err != nil {
		return stanza.Node{}, nil, 0, err
	}
	distributed := make([]jid.JID, len(parts))
	for i, p := range parts {
		distributed[i] = p.Device
	}
	res.Devices, res.Distributions = all, len(parts)
	out := OutgoingMessage{ID: id, To: group.String(), Content: content, PHash: signal.ParticipantHash(all), Parts: parts, SKMsg: skmsg}
	return out.Node(), distributed, gen, nil
}

// ResetGroupSenderKey starts a new sender key for the group with the next message,
// given only to the members then. Call it when a member left or was removed
// (PROTOCOL.md section 6).
func (a *Account) ResetGroupSenderKey(ctx context.Context, group jid.JID) error {
	if a.insideDeliver(ctx) {
		// It would wait for the group lock while holding the delivery's transaction,
		// which a sender to the group may be waiting for.
		return ErrInsideDeliver
	}
	ctx, unlock := a.locks.lock(ctx, groupKey(group))
	defer unlock()
	a.groups.bump(group)
	return a.mgr.ResetSenderKey(ctx, group)
}

type prepareFunc func(ctx context.Context, refresh bool) (stanza.Node, error)

// sendLoop sends what prepare built and applies the retry policy to refusals. A
// resend after 429, 412, 500/503 or a transport error repeats the same stanza (the
// same id and ciphertexts: the gateway did not deliver it, or the receiver drops the
// repeat as a duplicate); after a 409 prepare encrypts again for the fresh devices.
func (a *Account) sendLoop(ctx context.Context, id string, opts SendOptions, prepare prepareFunc, res *SendResult) error {
	log := a.logger(ctx).With().Str("message_id", id).Logger()
	maxAttempts := a.retry.MaxAttempts
	if opts.MaxAttempts > 0 {
		maxAttempts = opts.MaxAttempts
	}
	backoff := a.retry.Backoff
	backoff.Reset()
	var node stanza.Node
	needPrepare, refresh := true, false
	var refreshes, uploads, transient int
	for {
		if needPrepare {
			n, err := prepare(ctx, refresh)
			if err != nil {
				// Preparing asks the gateway for device lists and bundles: while the
				// connection is down (a send right after a restart, before the
				// reconnect), wait for it like for a failed stanza send.
				if !isTransportError(err) || ctx.Err() != nil {
					return fmt.Errorf("failed to prepare message %s: %w", id, err)
				}
				if transient++; maxAttempts > 0 && transient >= maxAttempts {
					return fmt.Errorf("failed to prepare message %s after %d attempts: %w", id, transient, err)
				}
				wait := backoff.Next()
				log.Debug().Err(err).Dur("retry_in", wait).Msg("Preparing again once the gateway is reachable")
				if serr := a.retry.Sleep(ctx, wait); serr != nil {
					return fmt.Errorf("failed to prepare message %s: %w (last error: %w)", id, serr, err)
				}
				continue
			}
			node, needPrepare = n, false
		}
		res.Attempts++
		ack, err := a.client.SendMessage(ctx, node)
		if err == nil {
			res.Timestamp = ack.T
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("failed to send message %s: %w", id, err)
		}
		code := errcode.CodeOf(err)
		if code != 0 {
			res.Refusals = append(res.Refusals, code)
		}
		var wait time.Duration
		switch {
		case code == 409:
			if refreshes++; refreshes > a.retry.MaxDeviceRefreshes {
				return fmt.Errorf("failed to send message %s: device lists stayed stale: %w", id, err)
			}
			needPrepare, refresh = true, true
		case code == 412:
			if uploads++; uploads > a.retry.MaxKeyUploads {
				return fmt.Errorf("failed to send message %s: %w", id, err)
			}
			if uerr := a.uploadPreKeys(ctx, UploadRefused); uerr != nil {
				return fmt.Errorf("failed to send message %s: %w (and the key upload failed: %w)", id, err, uerr)
			}
		case code == 429:
			if wait = refusalRetryAfter(err); wait <= 0 {
				wait = backoff.Next()
			}
		case code == 500 || code == 503 || isTransportError(err):
			if transient++; maxAttempts > 0 && transient >= maxAttempts {
				return fmt.Errorf("failed to send message %s after %d attempts: %w", id, res.Attempts, err)
			}
			wait = backoff.Next()
		default:
			return fmt.Errorf("failed to send message %s: %w", id, err)
		}
		log.Debug().Err(err).Dur("retry_in", wait).Int("attempt", res.Attempts).Msg("Sending again after a refusal")
		if wait > 0 {
			if serr := a.retry.Sleep(ctx, wait); serr != nil {
				return fmt.Errorf("failed to send message %s: %w (last refusal: %w)", id, serr, err)
			}
		}
	}
}

func refusalRetryAfter(err error) time.Duration {
	var e *errcode.Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

func isTransportError(err error) bool {
	return errors.Is(err, ErrNotConnected) || errors.Is(err, ErrDisconnected) ||
		errors.Is(err, ErrAckTimeout) || errors.Is(err, ErrIQTimeout)
}
