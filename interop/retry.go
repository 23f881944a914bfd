package interop

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// Both sides of retry receipts (PROTOCOL.md section 3.5).
//
// Receiving side: a message that does not decrypt gets <receipt to id type="retry"
// [participant]><retry count id t v="1"/><registration/>[<keys/>]</receipt>, with
// count per (chat, sender device, id) and <keys> from the second attempt on.
//
// Sending side: the kept copy is encrypted again for the one device that asked (with
// a new session from <keys> when count ≥ 2) and sent as
// <message id to type [edit]><participants><to jid=device><enc v="2" type count="N"/>
// </to></participants></message>, without phash. The phash check exists to catch a
// sender whose device lists are stale; a retry answer is addressed to exactly the one
// device that asked, so there is no list to check, and the gateway (metasim does the
// same) skips the check when the attribute is absent.
//
// <keys> holds our bundle in the upload format, one key instead of a list:
// <keys><type/><identity/>[<key><id/><value/></key>]<skey><id/><value/><signature/>
// </skey></keys>; the registration id is the receipt's <registration>.

// errNoBundle: a retry needed a new session and the gateway had no keys for the device.
var errNoBundle = errors.New("gateway has no keys for the device")

// maxRetryEntries bounds the receiving side's retry counters.
const maxRetryEntries = 10000

type retryKey struct {
	chat, sender jid.JID
	id           string
}

type retryEntry struct {
	count int
	at    time.Time
}

// retryCounter counts the retry receipts sent per received message. It lives in
// memory: after a restart counting starts again, which at worst allows a few more
// retries than signal.MaxRetries.
type retryCounter struct {
	mu sync.Mutex
	m  map[retryKey]retryEntry
}

func newRetryCounter() *retryCounter { return &retryCounter{m: make(map[retryKey]retryEntry)} }

func (r *retryCounter) peek(k retryKey) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[k].count
}

func (r *retryCounter) set(k retryKey, count int, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[k]; !ok && len(r.m) >= maxRetryEntries {
		for victim := range r.m {
			delete(r.m, victim)
			break
		}
	}
	r.m[k] = retryEntry{count: count, at: now}
}

func (r *retryCounter) forget(k retryKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, k)
}

func (r *retryCounter) prune(before time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, e := range r.m {
		if e.at.Before(before) {
			delete(r.m, k)
		}
	}
}

func (a *Account) sendRetryReceipt(ctx context.Context, info MessageInfo, count int) error {
	rr, err := a.mgr.BuildRetryReceipt(ctx, count)
	if err != nil {
		return err
	}
	node, err := BuildRetryReceiptNode(info, count, rr, a.now())
	if err != nil {
		return err
	}
	return a.client.SendNode(ctx, node)
}

// BuildRetryReceiptNode makes our count-th retry receipt for a received message.
func BuildRetryReceiptNode(info MessageInfo, count int, rr *signal.RetryReceipt, now time.Time) (stanza.Node, error) {
	if count < 1 || info.ID == "" || info.Sender.IsEmpty() {
		return stanza.Node{}, fmt.Errorf("cannot build retry receipt %d for %q", count, info.ID)
	}
	attrs := stanza.Attrs{"id": info.ID, "type": string(ReceiptRetry), "to": info.Sender.String()}
	if info.IsGroup {
		attrs["to"], attrs["participant"] = info.Chat.String(), info.Sender.String()
	}
	t := info.Timestamp
	if t.IsZero() {
		t = now
	}
	children := []stanza.Node{
		{Tag: "retry", Attrs: stanza.Attrs{"count": strconv.Itoa(count), "id": info.ID,
			"t": strconv.FormatInt(t.Unix(), 10), "v": "1"}},
		RegistrationNode(rr.RegistrationID),
	}
	if rr.Keys != nil {
		keys := []stanza.Node{KeyTypeNode(), IdentityNode(rr.Keys.IdentityKey)}
		if pk := rr.Keys.PreKey; pk != nil {
			n, err := PreKeyNode(PreKey{ID: pk.ID, Pub: pk.Public})
			if err != nil {
				return stanza.Node{}, err
			}
			keys = append(keys, n)
		}
		skey, err := SignedPreKeyNode(signedPreKeyToWire(rr.Keys.SignedPreKey))
		if err != nil {
			return stanza.Node{}, err
		}
		children = append(children, stanza.Node{Tag: "keys", Content: append(keys, skey)})
	}
	return stanza.Node{Tag: "receipt", Attrs: attrs, Content: children}, nil
}

// ParseRetryReceipt reads a received retry receipt: from is the device that failed
// (1:1) or the group, with participant that device.
func ParseRetryReceipt(n stanza.Node) (signal.RetryRequest, error) {
	var req signal.RetryRequest
	if n.Tag != "receipt" || n.Attr("type") != string(ReceiptRetry) {
		return req, fmt.Errorf("%s is not a retry receipt", n)
	}
	from, err := jid.Parse(n.Attr("from"))
	if err != nil || from.User == "" {
		return req, fmt.Errorf("malformed retry receipt: bad from %q", n.Attr("from"))
	}
	req.Device, req.Chat = from, from.ToUser()
	if from.IsGroup() {
		p, err := jid.Parse(n.Attr("participant"))
		if err != nil || p.User == "" || p.IsGroup() {
			return req, fmt.Errorf("malformed retry receipt: bad participant %q", n.Attr("participant"))
		}
		req.Device, req.Chat = p, from
	}
	retry, ok := n.Child("retry")
	if !ok {
		return req, errors.New("malformed retry receipt: no <retry>")
	}
	count, err := retry.AttrInt("count")
	if err != nil || count < 1 || count > 1000 {
		return req, fmt.Errorf("malformed retry receipt: bad count %q", retry.Attr("count"))
	}
	req.Count = int(count)
	if req.MessageID = retry.Attr("id"); req.MessageID == "" {
		req.MessageID = n.Attr("id")
	}
	if req.MessageID == "" {
		return req, errors.New("malformed retry receipt: no id")
	}
	reg, err := fixedChild(n, "registration", 4)
	if err != nil {
		return req, fmt.Errorf("malformed retry receipt: %w", err)
	}
	req.RegistrationID = uint32(reg[0])<<24 | uint32(reg[1])<<16 | uint32(reg[2])<<8 | uint32(reg[3])
	if keys, ok := n.Child("keys"); ok {
		if req.Keys, err = parseRetryKeys(keys, req.RegistrationID); err != nil {
			return req, fmt.Errorf("malformed retry receipt keys: %w", err)
		}
	}
	return req, nil
}

func parseRetryKeys(keys stanza.Node, registrationID uint32) (*signal.PreKeyBundle, error) {
	b := &signal.PreKeyBundle{RegistrationID: registrationID}
	typ, err := fixedChild(keys, "type", 1)
	if err != nil {
		return nil, err
	}
	if typ[0] != keyTypeDJB {
		return nil, fmt.Errorf("key type 0x%02x, want 0x05", typ[0])
	}
	if err = copyChild(b.IdentityKey[:], keys, "identity"); err != nil {
		return nil, err
	}
	skey, ok := keys.Child("skey")
	if !ok {
		return nil, errors.New("no <skey>")
	}
	if b.SignedPreKey.ID, err = parseKeyID(skey); err != nil {
		return nil, err
	}
	if err = copyChild(b.SignedPreKey.Public[:], skey, "value"); err != nil {
		return nil, err
	}
	if err = copyChild(b.SignedPreKey.Signature[:], skey, "signature"); err != nil {
		return nil, err
	}
	if key, ok := keys.Child("key"); ok {
		pk := &signal.PreKey{}
		if pk.ID, err = parseKeyID(key); err != nil {
			return nil, err
		}
		if err = copyChild(pk.Public[:], key, "value"); err != nil {
			return nil, err
		}
		b.PreKey = pk
	}
	return b, nil
}

// HandleRetryReceipt answers a retry receipt (Run calls it for every one) and acks
// it. Retries past signal.MaxRetries, for messages no longer kept, or that the gateway
// refuses for good are logged, reported as RetryAnswered with Err and acked. A
// transient failure (no connection, 429, 5xx, a store error) returns the error and
// leaves the receipt unacked, so the gateway delivers it again.
func (a *Account) HandleRetryReceipt(ctx context.Context, node stanza.Node) error {
	log := a.logger(ctx)
	req, err := ParseRetryReceipt(node)
	if err != nil {
		log.Warn().Err(err).Msg("Acking a malformed retry receipt")
		return a.client.Ack(ctx, node)
	}
	evt := &RetryAnswered{Device: req.Device, Chat: req.Chat, MessageID: req.MessageID, Count: req.Count}
	if err = a.answerRetry(ctx, req); err != nil {
		if !permanentRetryFailure(err) {
			return err
		}
		log.Warn().Err(err).Str("message_id", req.MessageID).Stringer("device", req.Device).
			Int("retry_count", req.Count).Msg("Not answering retry receipt")
		evt.Err = err
	}
	a.emit(evt)
	return a.client.Ack(ctx, node)
}

func permanentRetryFailure(err error) bool {
	if errors.Is(err, signal.ErrTooManyRetries) || errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, errNoBundle) || errors.Is(err, signal.ErrInvalidBundle) || errors.Is(err, errBadKeptCopy) {
		return true
	}
	var e *errcode.Error
	return errors.As(err, &e) && !e.Retryable()
}

var errBadKeptCopy = errors.New("kept copy of the message is unusable")

func (a *Account) answerRetry(ctx context.Context, req signal.RetryRequest) error {
	if req.Count > signal.MaxRetries {
		return fmt.Errorf("%w: retry %d", signal.ErrTooManyRetries, req.Count)
	}
	sent, err := a.st.GetSentMessage(ctx, req.Chat, req.MessageID)
	if err != nil {
		return err
	}
	kept := &waE2E.Message{}
	if err = proto.Unmarshal(sent.Plaintext, kept); err != nil {
		return fmt.Errorf("%w: %w", errBadKeptCopy, err)
	}
	kept.SenderKeyDistributionMessage = nil // group copies carry one; Classify refuses it
	content, err := Classify(kept)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadKeptCopy, err)
	}
	part, err := a.reencrypt(ctx, req)
	if err != nil {
		return err
	}
	out := OutgoingMessage{ID: req.MessageID, To: req.Chat.String(), Content: content,
		Parts: []signal.EncryptedPart{part}, RetryCount: req.Count}
	// The receipt can overtake the gateway's ack of the original message, whose id the
	// answer reuses: wait for that ack rather than fail (the receipt would stay
	// unanswered until the next reconnect).
	deadline := time.Now().Add(retryAnswerWait)
	for {
		_, err = a.client.SendMessage(ctx, out.Node())
		if !errors.Is(err, ErrAnswerPending) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failed to send retry answer: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("failed to send retry answer: %w", err)
	}
	return nil
}

// retryAnswerWait bounds how long a retry answer waits for the original message's ack.
const retryAnswerWait = time.Minute

// reencrypt runs ResendForRetry under the device's user lock, fetching the device's
// bundle when a new session is needed and the receipt brought no keys. The ratchet
// step has committed when it returns.
func (a *Account) reencrypt(ctx context.Context, req signal.RetryRequest) (signal.EncryptedPart, error) {
	ctx, unlock := a.locks.lock(ctx, userKey(req.Device))
	defer unlock()
	part, err := a.mgr.ResendForRetry(ctx, req)
	if !errors.Is(err, signal.ErrRetryNeedsKeys) {
		return part, err
	}
	bundles, err := a.client.FetchPreKeys(ctx, []jid.JID{req.Device})
	if err != nil {
		return part, err
	}
	b, ok := bundles[req.Device]
	if !ok || b.Err != nil {
		return part, fmt.Errorf("%w: %s", errNoBundle, req.Device)
	}
	req.Keys = bundleFromWire(b)
	return a.mgr.ResendForRetry(ctx, req)
}
