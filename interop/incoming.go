package interop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// MessageInfo is what a received <message> says about itself (PROTOCOL.md 3.4).
type MessageInfo struct {
	ID        string
	Chat      jid.JID // the peer user (1:1) or the group
	Sender    jid.JID // the sending device
	IsGroup   bool
	Timestamp time.Time // zero when the stanza had no t
	Type      string    // text, media or reaction
	MediaType string    // the content enc's mediatype (set on delivery)
	Edit      string    // EditMessage, EditSenderRevoke or ""
	PushName  string    // notify
}

// DecryptedMessage is one received message as handed to a DeliverFunc: either its
// content, or (Message nil) the news that it could not be decrypted.
type DecryptedMessage struct {
	Info MessageInfo
	// Message is the content; a sender key distribution it carried was processed and
	// removed. Nil when Undecryptable is set.
	Message *waE2E.Message
	EncType string // signal.TypePreKeyMessage, TypeMessage or TypeSenderKey
	// RetryCount is set when this is the sender's answer to our retry receipt.
	RetryCount int
	// Undecryptable is set when the message could not be decrypted: show it to the
	// user (a gap they can see beats a silent one). The same ID may be delivered again
	// later, decrypted, when the sender answers the retry receipt.
	Undecryptable *UndecryptableMessage
}

// UndecryptableMessage says why a message could not be read.
type UndecryptableMessage struct {
	Err error
	// RetryReceipts is how many retry receipts were sent for this message so far.
	RetryReceipts int
	// GaveUp is set when no more retry receipts will be sent (signal.MaxRetries
	// reached, or the stanza itself was malformed).
	GaveUp bool
}

// DeliverFunc hands a received message to the upper layer. For a decrypted message it
// runs inside the decryption's store transaction: writes made with ctx commit together
// with the ratchet step, and an error rolls both back and leaves the stanza unacked,
// so the gateway delivers it again. It must not send messages (ErrInsideDeliver).
type DeliverFunc func(ctx context.Context, m *DecryptedMessage) error

// IncomingOutcome says what HandleMessage did with a message, for metrics.
type IncomingOutcome string

const (
	OutcomeDelivered     IncomingOutcome = "delivered"
	OutcomeDuplicate     IncomingOutcome = "duplicate"     // already decrypted before: acked, not delivered again
	OutcomeUndecryptable IncomingOutcome = "undecryptable" // delivered as Undecryptable, retry receipt sent
	OutcomeMalformed     IncomingOutcome = "malformed"     // the stanza itself was broken
	OutcomeNoContent     IncomingOutcome = "no_content"    // e.g. only a sender key distribution
)

// errBadContent: a plaintext that decrypted but is not a Message.
var errBadContent = errors.New("decrypted plaintext is not a Message")

// deliverError marks an error returned by a DeliverFunc.
type deliverError struct{ err error }

func (e *deliverError) Error() string { return "delivery failed: " + e.err.Error() }
func (e *deliverError) Unwrap() error { return e.err }

// IncomingEnc is one <enc> of a received message.
type IncomingEnc struct {
	Type       string
	MediaType  string
	Count      int // set on answers to retry receipts
	Ciphertext []byte
}

// HandleMessage decrypts a received <message> (an IncomingMessage event), hands it to
// deliver and acks it. Its encs are decrypted 1:1 first, then the skmsg, nested in one
// store transaction: a sender key distribution carried 1:1 is stored in it, and deliver
// runs inside it. The stanza is acked only after deliver returned nil and the
// transaction committed; when deliver fails the error is returned and nothing is
// acked. A message decrypted before (a redelivery) is acked without a second deliver.
// A message that does not decrypt gets a retry receipt (up to signal.MaxRetries per
// sender and id), is delivered as Undecryptable, and is acked.
func (a *Account) HandleMessage(ctx context.Context, node stanza.Node, deliver DeliverFunc) (IncomingOutcome, error) {
	if a.insideDeliver(ctx) {
		return "", ErrInsideDeliver
	}
	log := a.logger(ctx)
	info, err := ParseMessageInfo(node)
	if err != nil {
		// Acked when it can be, or it would come back on every connection.
		if ackErr := a.client.Ack(ctx, node); ackErr != nil {
			return OutcomeMalformed, fmt.Errorf("malformed message stanza that cannot be acked: %w", err)
		}
		log.Warn().Err(err).Msg("Acked a malformed message stanza")
		return OutcomeMalformed, nil
	}
	msgLog := log.With().Str("message_id", info.ID).Stringer("sender", info.Sender).Logger()
	log = &msgLog
	encs, err := ParseEncs(node, info.IsGroup)
	if err != nil {
		log.Warn().Err(err).Msg("Message stanza has no usable enc")
		u := &UndecryptableMessage{Err: err, GaveUp: true}
		return OutcomeMalformed, a.reportUndecryptable(ctx, node, info, u, deliver)
	}

	ctx, unlock := a.locks.lock(ctx, userKey(info.Sender))
	defer unlock()
	run, err := a.decrypt(ctx, info, encs, deliver)
	if err != nil {
		return "", err
	}
	if run.identityChanged {
		a.emit(&SafetyNumberChanged{User: info.Sender.ToUser(), Device: info.Sender})
	}
	rkey := retryKey{chat: info.Chat, sender: info.Sender, id: info.ID}
	var outcome IncomingOutcome
	switch {
	case run.delivered:
		a.retries.forget(rkey)
		outcome = OutcomeDelivered
	case len(run.failures) > 0:
		return OutcomeUndecryptable, a.undecryptable(ctx, node, info, rkey, run.failures[0], deliver)
	case run.duplicates > 0:
		log.Debug().Msg("Message was decrypted before, acking it again")
		outcome = OutcomeDuplicate
	default:
		outcome = OutcomeNoContent
	}
	if err := a.client.Ack(ctx, node); err != nil {
		return outcome, fmt.Errorf("failed to ack message %s: %w", info.ID, err)
	}
	return outcome, nil
}

// decrypt runs the encs of one message (the caller holds the sender's lock).
func (a *Account) decrypt(ctx context.Context, info MessageInfo, encs []IncomingEnc, deliver DeliverFunc) (*incomingRun, error) {
	run := &incomingRun{a: a, info: info, deliver: deliver}
	if err := run.step(ctx, encs); err != nil {
		if de := (*deliverError)(nil); errors.As(err, &de) {
			return nil, fmt.Errorf("failed to deliver message %s: %w", info.ID, de.err)
		}
		return nil, fmt.Errorf("failed to handle message %s: %w", info.ID, err)
	}
	return run, nil
}

// undecryptable asks the sender to encrypt again (while retries remain), tells the
// upper layer, and acks.
func (a *Account) undecryptable(ctx context.Context, node stanza.Node, info MessageInfo, rkey retryKey, cause error, deliver DeliverFunc) error {
	log := a.logger(ctx)
	count := a.retries.peek(rkey) + 1
	u := &UndecryptableMessage{Err: cause, RetryReceipts: count - 1, GaveUp: count > signal.MaxRetries}
	log.Warn().Err(cause).Str("message_id", info.ID).Stringer("sender", info.Sender).Int("retry_count", count).
		Msg("Failed to decrypt message")
	if !u.GaveUp {
		if err := a.sendRetryReceipt(ctx, info, count); err != nil {
			// Not acked: the next delivery tries the receipt again.
			return fmt.Errorf("failed to send retry receipt for %s: %w", info.ID, err)
		}
		a.retries.set(rkey, count, a.now())
		u.RetryReceipts = count
	}
	return a.reportUndecryptable(ctx, node, info, u, deliver)
}

// reportUndecryptable delivers the notice and acks the stanza.
func (a *Account) reportUndecryptable(ctx context.Context, node stanza.Node, info MessageInfo, u *UndecryptableMessage, deliver DeliverFunc) error {
	dm := &DecryptedMessage{Info: info, Undecryptable: u}
	if err := deliver(context.WithValue(ctx, inDeliverKey{a}, true), dm); err != nil {
		return fmt.Errorf("failed to deliver undecryptable message %s: %w", info.ID, err)
	}
	if err := a.client.Ack(ctx, node); err != nil {
		return fmt.Errorf("failed to ack message %s: %w", info.ID, err)
	}
	return nil
}

// incomingRun decrypts the encs of one message, each step nested in the previous
// one's transaction.
type incomingRun struct {
	a       *Account
	info    MessageInfo
	deliver DeliverFunc

	content    *waE2E.Message
	contentEnc IncomingEnc
	delivered  bool
	duplicates int
	failures   []error
	// identityChanged: a prekey message came with a new identity for the sender.
	identityChanged bool
}

// step decrypts encs[0] and, inside its transaction, the rest; at the end it delivers.
// An enc that fails to decrypt (or was decrypted before) is skipped, with the rest
// still handled, so a good sender key distribution is kept even when its skmsg fails.
// Only delivery and store errors abort, rolling everything back.
func (r *incomingRun) step(ctx context.Context, encs []IncomingEnc) error {
	if len(encs) == 0 {
		return r.finish(ctx)
	}
	e, rest := encs[0], encs[1:]
	handle := func(ctx context.Context, plaintext []byte) error {
		if err := r.absorb(ctx, e, plaintext); err != nil {
			return err
		}
		return r.step(ctx, rest)
	}
	var err error
	if e.Type == signal.TypeSenderKey {
		err = r.a.mgr.GroupDecrypt(ctx, r.info.Chat, r.info.Sender, e.Ciphertext, handle)
	} else {
		var di signal.DecryptInfo
		di, err = r.a.mgr.Decrypt(ctx, r.info.Sender, e.Type, e.Ciphertext, handle)
		if err == nil && di.IdentityChanged {
			r.identityChanged = true
		}
	}
	var he *signal.HandleError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &he):
		if errors.Is(he.Err, errBadContent) {
			r.failures = append(r.failures, he.Err)
			return r.step(ctx, rest)
		}
		return he.Err
	case errors.Is(err, signal.ErrDuplicate):
		r.duplicates++
		return r.step(ctx, rest)
	case signal.IsDecryptError(err), errors.Is(err, signal.ErrUnknownType):
		r.failures = append(r.failures, err)
		return r.step(ctx, rest)
	}
	return err
}

// absorb reads one enc's plaintext: a sender key distribution is stored (in the
// transaction of ctx), content is kept for delivery.
func (r *incomingRun) absorb(ctx context.Context, e IncomingEnc, plaintext []byte) error {
	msg := &waE2E.Message{}
	if err := proto.Unmarshal(plaintext, msg); err != nil {
		return fmt.Errorf("%w: %w", errBadContent, err)
	}
	if skdm := msg.SenderKeyDistributionMessage; skdm != nil {
		msg.SenderKeyDistributionMessage = nil
		if err := r.processDistribution(ctx, e, skdm); err != nil {
			return err
		}
	}
	if r.content == nil && proto.Size(msg) > 0 {
		r.content, r.contentEnc = msg, e
	}
	return nil
}

func (r *incomingRun) processDistribution(ctx context.Context, e IncomingEnc, skdm *waE2E.SenderKeyDistributionMessage) error {
	log := r.a.logger(ctx)
	switch {
	case e.Type == signal.TypeSenderKey || !r.info.IsGroup:
		log.Debug().Msg("Ignoring a sender key distribution outside a 1:1 enc of a group message")
		return nil
	case skdm.GetGroupId() != r.info.Chat.String():
		log.Warn().Msg("Ignoring a sender key distribution for another group")
		return nil
	}
	err := r.a.mgr.ProcessSenderKeyDistribution(ctx, r.info.Chat, r.info.Sender, skdm.GetAxolotlSenderKeyDistributionMessage())
	if err != nil && signal.IsDecryptError(err) {
		// The skmsg will fail too and ask for a retry; a store failure aborts instead.
		log.Warn().Err(err).Msg("Ignoring an invalid sender key distribution")
		return nil
	}
	return err
}

// finish delivers the content, inside every enclosing transaction.
func (r *incomingRun) finish(ctx context.Context) error {
	if r.content == nil {
		return nil
	}
	info := r.info
	info.MediaType = r.contentEnc.MediaType
	dm := &DecryptedMessage{Info: info, Message: r.content, EncType: r.contentEnc.Type, RetryCount: r.contentEnc.Count}
	if err := r.deliver(context.WithValue(ctx, inDeliverKey{r.a}, true), dm); err != nil {
		return &deliverError{err: err}
	}
	r.delivered = true
	return nil
}

// ParseMessageInfo reads the attributes of a received <message>: from (the sender
// device, or the group with participant the sender device), id, t, type, notify, edit.
func ParseMessageInfo(n stanza.Node) (MessageInfo, error) {
	if n.Tag != "message" {
		return MessageInfo{}, fmt.Errorf("<%s> is not a message", n.Tag)
	}
	info := MessageInfo{ID: n.Attr("id"), Type: n.Attr("type"), Edit: n.Attr("edit"), PushName: n.Attr("notify")}
	if info.ID == "" {
		return MessageInfo{}, errors.New("malformed message: no id")
	}
	from, err := jid.Parse(n.Attr("from"))
	if err != nil || from.User == "" {
		return MessageInfo{}, fmt.Errorf("malformed message: bad from %q", n.Attr("from"))
	}
	if from.IsGroup() {
		p, err := jid.Parse(n.Attr("participant"))
		if err != nil || p.User == "" || p.IsGroup() {
			return MessageInfo{}, fmt.Errorf("malformed group message: bad participant %q", n.Attr("participant"))
		}
		info.Chat, info.Sender, info.IsGroup = from, p, true
	} else {
		info.Chat, info.Sender = from.ToUser(), from
	}
	if n.HasAttr("t") {
		t, err := n.AttrInt("t")
		if err != nil || t < 0 {
			return MessageInfo{}, fmt.Errorf("malformed message: bad t %q", n.Attr("t"))
		}
		info.Timestamp = time.Unix(t, 0)
	}
	return info, nil
}

// ParseEncs reads the encs of a received message, the 1:1 one (pkmsg or msg) first and
// the skmsg after it: the 1:1 one may carry the key the skmsg needs. A message holds at
// most one of each; a skmsg only in a group.
func ParseEncs(n stanza.Node, isGroup bool) ([]IncomingEnc, error) {
	var direct, group []IncomingEnc
	for _, c := range n.ChildrenByTag("enc") {
		if v := c.Attr("v"); v != "2" {
			return nil, fmt.Errorf("enc version %q, want 2", v)
		}
		ct, err := c.Bytes()
		if err != nil {
			return nil, err
		}
		if len(ct) == 0 {
			return nil, errors.New("empty enc")
		}
		e := IncomingEnc{Type: c.Attr("type"), MediaType: c.Attr("mediatype"), Ciphertext: ct}
		if c.HasAttr("count") {
			count, err := c.AttrInt("count")
			if err != nil || count < 0 || count > 1000 {
				return nil, fmt.Errorf("bad enc count %q", c.Attr("count"))
			}
			e.Count = int(count)
		}
		switch e.Type {
		case signal.TypePreKeyMessage, signal.TypeMessage:
			direct = append(direct, e)
		case signal.TypeSenderKey:
			if !isGroup {
				return nil, errors.New("skmsg outside a group")
			}
			group = append(group, e)
		default:
			return nil, fmt.Errorf("%w %q", signal.ErrUnknownType, e.Type)
		}
	}
	switch {
	case len(direct)+len(group) == 0:
		return nil, errors.New("no enc")
	case len(direct) > 1 || len(group) > 1:
		return nil, fmt.Errorf("%d 1:1 and %d group encs, want at most one of each", len(direct), len(group))
	}
	return append(direct, group...), nil
}
