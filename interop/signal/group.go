package signal

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/groups"
	"go.mau.fi/libsignal/protocol"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// senderKeyName names the sender key of one sender device in one group.
func senderKeyName(group, sender jid.JID) *protocol.SenderKeyName {
	return protocol.NewSenderKeyName(group.String(), sender.SignalAddress())
}

// GroupEncrypt pads plaintext and encrypts it with our sender key for the group,
// creating the key if there is none. distribution is the serialized
// SenderKeyDistributionMessage of our current key as of this message: wrap it 1:1 for
// every device that DevicesLackingSenderKey lists, then MarkSenderKeyDelivered.
func (m *Manager) GroupEncrypt(ctx context.Context, group jid.JID, plaintext []byte) (skmsg, distribution []byte, err error) {
	name := senderKeyName(group, m.own())
	ctx, unlock := m.locks.lock(ctx, groupLock(group, m.own()))
	defer unlock()
	padded := Pad(plaintext)
	err = m.st.DoTxn(ctx, func(ctx context.Context) error {
		return guard(func() error {
			builder := groups.NewGroupSessionBuilder(m.st, m.ser)
			// Created before encrypting, so it starts at this message's iteration.
			skdm, err := builder.Create(ctx, name)
			if err != nil {
				return fmt.Errorf("failed to create sender key: %w", err)
			}
			msg, err := groups.NewGroupCipher(builder, name, m.st).Encrypt(ctx, padded)
			if err != nil {
				return fmt.Errorf("failed to encrypt group message: %w", mapErr(err))
			}
			skMsg, ok := msg.(*protocol.SenderKeyMessage)
			if !ok {
				return fmt.Errorf("libsignal returned a %T for a group message", msg)
			}
			skmsg, distribution = skMsg.SignedSerialize(), skdm.Serialize()
			return nil
		})
	})
	if err != nil {
		return nil, nil, err
	}
	return skmsg, distribution, nil
}

// DevicesLackingSenderKey returns the devices (in input order) that have not been
// given our current sender key for the group.
func (m *Manager) DevicesLackingSenderKey(ctx context.Context, group jid.JID, devices []jid.JID) ([]jid.JID, error) {
	holders, err := m.st.SenderKeyHolders(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("failed to load sender key holders: %w", err)
	}
	var out []jid.JID
	for _, d := range devices {
		if _, ok := holders[d]; !ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// MarkSenderKeyDelivered records that these devices received our current sender key
// (call it once the gateway accepted the message that carried it).
func (m *Manager) MarkSenderKeyDelivered(ctx context.Context, group jid.JID, devices []jid.JID) error {
	if err := m.st.AddSenderKeyHolders(ctx, group, devices); err != nil {
		return fmt.Errorf("failed to record sender key holders: %w", err)
	}
	return nil
}

// ResetSenderKey drops our sender key for the group and the list of who holds it, so
// the next GroupEncrypt starts a new key that only the current members receive. Call
// it when a member leaves or is removed (PROTOCOL.md section 6).
func (m *Manager) ResetSenderKey(ctx context.Context, group jid.JID) error {
	ctx, unlock := m.locks.lock(ctx, groupLock(group, m.own()))
	defer unlock()
	if err := m.st.ResetSenderKey(ctx, group); err != nil {
		return fmt.Errorf("failed to reset sender key: %w", err)
	}
	return nil
}

// ProcessSenderKeyDistribution stores a group sender's key from a
// SenderKeyDistributionMessage. Receiving the same key again is a no-op, so a
// redelivered distribution cannot rewind the sender's chain.
func (m *Manager) ProcessSenderKeyDistribution(ctx context.Context, group, sender jid.JID, skdm []byte) error {
	var msg *protocol.SenderKeyDistributionMessage
	if err := guard(func() (err error) { msg, err = m.parseDistribution(skdm); return err }); err != nil {
		return mapErr(err)
	}
	name := senderKeyName(group, sender)
	ctx, unlock := m.locks.lock(ctx, groupLock(group, sender))
	defer unlock()
	return m.st.DoTxn(ctx, func(ctx context.Context) error {
		return guard(func() error {
			rec, err := m.st.LoadSenderKey(ctx, name)
			if err != nil {
				return fmt.Errorf("failed to load sender key: %w", err)
			}
			if rec != nil {
				if _, err := rec.GetSenderKeyStateByID(msg.ID()); err == nil {
					return nil
				}
			}
			if err = groups.NewGroupSessionBuilder(m.st, m.ser).Process(ctx, name, msg); err != nil {
				return fmt.Errorf("failed to process sender key distribution: %w", mapErr(err))
			}
			return nil
		})
	})
}

func (m *Manager) parseDistribution(b []byte) (*protocol.SenderKeyDistributionMessage, error) {
	if err := checkVersion(b); err != nil {
		return nil, err
	}
	st, err := m.ser.SenderKeyDistributionMessage.Deserialize(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !validPoint(st.SigningKey) || len(st.ChainKey) != 32 {
		return nil, fmt.Errorf("%w: bad key in sender key distribution", ErrMalformed)
	}
	msg, err := protocol.NewSenderKeyDistributionMessageFromStruct(st, m.ser.SenderKeyDistributionMessage)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return msg, nil
}

// GroupDecrypt decrypts a skmsg from a sender device with the same transaction rules
// as Decrypt: handle runs inside the transaction and a failure rolls the chain back.
func (m *Manager) GroupDecrypt(ctx context.Context, group, sender jid.JID, skmsg []byte, handle HandleFunc) error {
	handle = orAccept(handle)
	var msg *protocol.SenderKeyMessage
	err := guard(func() (err error) {
		if err = checkVersion(skmsg); err != nil {
			return err
		}
		msg, err = protocol.NewSenderKeyMessageFromBytes(skmsg, m.ser.SenderKeyMessage)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		// The signature is checked over a re-serialized copy; see checkMessage.
		if !bytes.Equal(msg.SignedSerialize(), skmsg) {
			return fmt.Errorf("%w: non-canonical encoding", ErrMalformed)
		}
		if n := len(msg.Ciphertext()); n == 0 || n%16 != 0 {
			return fmt.Errorf("%w: ciphertext is not whole AES blocks", ErrMalformed)
		}
		return nil
	})
	if err != nil {
		return mapErr(err)
	}
	name := senderKeyName(group, sender)
	ctx, unlock := m.locks.lock(ctx, groupLock(group, sender))
	defer unlock()
	return m.st.DoTxn(ctx, func(ctx context.Context) error {
		var plaintext []byte
		err := guard(func() (err error) {
			plaintext, err = groups.NewGroupCipher(groups.NewGroupSessionBuilder(m.st, m.ser), name, m.st).Decrypt(ctx, msg)
			return err
		})
		if err != nil {
			return fmt.Errorf("failed to decrypt skmsg from %s in %s: %w", sender, group, mapErr(err))
		}
		return unpadAndHandle(ctx, plaintext, handle)
	})
}

// IsDecryptError reports whether err means the message could not be decrypted (so a
// retry receipt is due), as opposed to a failed handling or a store failure.
func IsDecryptError(err error) bool {
	var he *HandleError
	if errors.As(err, &he) {
		return false
	}
	for _, target := range []error{ErrNoSession, ErrDecrypt, ErrMalformed, ErrUnknownPreKey, ErrBadPadding,
		ErrNoSenderKey, ErrUntrustedIdentity, ErrLibraryPanic} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
