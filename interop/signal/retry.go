package signal

import (
	"context"
	"fmt"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// MaxRetries is the highest retry count answered (PROTOCOL.md section 3.5).
const MaxRetries = 5

// RetryReceipt is what we put in a retry receipt after failing to decrypt a message.
type RetryReceipt struct {
	RegistrationID uint32
	// Keys is our bundle, with a one-time prekey set aside for this sender, from the
	// second attempt on (the `<keys>` element, in the upload format).
	Keys *PreKeyBundle
}

// BuildRetryReceipt returns the content of our count-th retry receipt for a message.
func (m *Manager) BuildRetryReceipt(ctx context.Context, count int) (*RetryReceipt, error) {
	r := &RetryReceipt{RegistrationID: m.st.Account().RegistrationID}
	if count >= 2 {
		keys, err := m.OwnBundle(ctx)
		if err != nil {
			return nil, err
		}
		r.Keys = keys
	}
	return r, nil
}

// RetryRequest is a retry receipt received from one device of a peer.
type RetryRequest struct {
	Device         jid.JID // the device that failed to decrypt
	Chat           jid.JID // where the message went (the peer user or the group): finds the kept copy
	MessageID      string
	Count          int
	RegistrationID uint32        // the device's current registration id
	Keys           *PreKeyBundle // the receipt's `<keys>`, or a bundle fetched for ErrRetryNeedsKeys
}

// ResendForRetry re-encrypts a kept sent message (store.GetSentMessage) for the device
// that asked. A new session is built from req.Keys when the count is 2 or more, when
// there is no session, or when the device's registration id differs from the
// session's (it was reinstalled); without Keys that is ErrRetryNeedsKeys. Otherwise
// the existing session is used.
func (m *Manager) ResendForRetry(ctx context.Context, req RetryRequest) (EncryptedPart, error) {
	if req.Count > MaxRetries {
		return EncryptedPart{}, fmt.Errorf("%w: retry %d for %s", ErrTooManyRetries, req.Count, req.MessageID)
	}
	sent, err := m.st.GetSentMessage(ctx, req.Chat, req.MessageID)
	if err != nil {
		return EncryptedPart{}, fmt.Errorf("failed to load sent message for retry: %w", err)
	}
	padded := Pad(sent.Plaintext)
	ctx, unlock := m.locks.lock(ctx, userLock(req.Device))
	defer unlock()
	var part EncryptedPart
	err = m.st.DoTxn(ctx, func(ctx context.Context) error {
		fresh, err := m.needsNewSession(ctx, req)
		if err != nil {
			return err
		}
		if fresh {
			if req.Keys == nil {
				return fmt.Errorf("%w: retry %d from %s", ErrRetryNeedsKeys, req.Count, req.Device)
			}
			if err = m.st.DeleteSession(ctx, req.Device.SignalAddress()); err != nil {
				return fmt.Errorf("failed to drop session for retry: %w", err)
			}
			if _, err = m.processBundle(ctx, req.Device, req.Keys); err != nil {
				return err
			}
		}
		part, err = m.encrypt(ctx, req.Device, padded)
		return err
	})
	if err != nil {
		return EncryptedPart{}, err
	}
	m.logger(ctx).Debug().Stringer("device", req.Device).Str("message_id", req.MessageID).
		Int("retry_count", req.Count).Str("enc_type", part.Type).Msg("Re-encrypted message for retry")
	return part, nil
}

func (m *Manager) needsNewSession(ctx context.Context, req RetryRequest) (bool, error) {
	if req.Count >= 2 {
		return true, nil
	}
	addr := req.Device.SignalAddress()
	ok, err := m.st.ContainsSession(ctx, addr)
	if err != nil {
		return false, fmt.Errorf("failed to check session: %w", err)
	} else if !ok {
		return true, nil
	}
	if req.RegistrationID == 0 {
		return false, nil
	}
	var regID uint32
	err = guard(func() error {
		rec, err := m.st.LoadSession(ctx, addr)
		if err != nil {
			return fmt.Errorf("failed to load session: %w", err)
		}
		regID = rec.SessionState().RemoteRegistrationID()
		return nil
	})
	return err == nil && regID != req.RegistrationID, err
}
