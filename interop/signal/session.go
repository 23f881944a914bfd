package signal

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// EncryptedPart is one `<enc>` for one device.
type EncryptedPart struct {
	Device     jid.JID
	Type       string // TypePreKeyMessage or TypeMessage
	Ciphertext []byte
}

// DecryptInfo describes a successful decryption.
type DecryptInfo struct {
	Type string
	// IdentityChanged: a prekey message came with another identity key than the one
	// recorded for the device (it was reinstalled). The new identity was accepted, as
	// WhatsApp does; tell the user that the safety number changed.
	IdentityChanged bool
}

// HasSession reports whether we have a session with the device.
func (m *Manager) HasSession(ctx context.Context, device jid.JID) (bool, error) {
	ok, err := m.st.ContainsSession(ctx, device.SignalAddress())
	if err != nil {
		return false, fmt.Errorf("failed to check session: %w", err)
	}
	return ok, nil
}

// DeleteSession drops the session with one device.
func (m *Manager) DeleteSession(ctx context.Context, device jid.JID) error {
	ctx, unlock := m.locks.lock(ctx, userLock(device))
	defer unlock()
	if err := m.st.DeleteSession(ctx, device.SignalAddress()); err != nil {
		return fmt.Errorf("failed to delete session: %w", err)
	}
	return nil
}

// ProcessBundle starts a new session with a device from its fetched bundle; the next
// message to it is a pkmsg. A bundle whose identity differs from the recorded one is
// accepted (the gateway is the authority on keys, as in WhatsApp): the old session is
// dropped and identityChanged reports it.
func (m *Manager) ProcessBundle(ctx context.Context, device jid.JID, b *PreKeyBundle) (identityChanged bool, err error) {
	ctx, unlock := m.locks.lock(ctx, userLock(device))
	defer unlock()
	err = m.st.DoTxn(ctx, func(ctx context.Context) error {
		identityChanged, err = m.processBundle(ctx, device, b)
		return err
	})
	return identityChanged, err
}

// processBundle is ProcessBundle inside the caller's lock and transaction.
func (m *Manager) processBundle(ctx context.Context, device jid.JID, b *PreKeyBundle) (bool, error) {
	if err := b.Verify(); err != nil {
		return false, err
	}
	addr := device.SignalAddress()
	changed, err := m.acceptIdentity(ctx, device, identity.NewKey(ecc.NewDjbECPublicKey(b.IdentityKey)))
	if err != nil {
		return false, err
	}
	err = guard(func() error {
		return session.NewBuilderFromSignal(m.st, addr, m.ser).ProcessBundle(ctx, b.Libsignal(addr.DeviceID()))
	})
	if err != nil {
		return false, fmt.Errorf("failed to process bundle: %w", mapErr(err))
	}
	return changed, nil
}

// acceptIdentity makes key the device's recorded identity. When another key was
// recorded, the session built on it is dropped and true is returned.
func (m *Manager) acceptIdentity(ctx context.Context, device jid.JID, key *identity.Key) (bool, error) {
	addr := device.SignalAddress()
	known, err := m.st.GetIdentity(ctx, addr.Name(), addr.DeviceID())
	if err != nil {
		return false, fmt.Errorf("failed to load identity: %w", err)
	}
	if known == nil || bytes.Equal(known.Serialize(), key.Serialize()) {
		return false, nil
	}
	if err = m.st.DeleteSession(ctx, addr); err != nil {
		return false, fmt.Errorf("failed to drop session of changed identity: %w", err)
	}
	if err = m.st.SaveIdentity(ctx, addr, key); err != nil {
		return false, fmt.Errorf("failed to save changed identity: %w", err)
	}
	m.logger(ctx).Info().Stringer("device", device).Msg("Identity key of device changed")
	return true, nil
}

// Encrypt pads plaintext and encrypts it for one device with the existing session.
func (m *Manager) Encrypt(ctx context.Context, device jid.JID, plaintext []byte) (EncryptedPart, error) {
	return m.encryptLocked(ctx, device, Pad(plaintext))
}

func (m *Manager) encryptLocked(ctx context.Context, device jid.JID, padded []byte) (part EncryptedPart, err error) {
	ctx, unlock := m.locks.lock(ctx, userLock(device))
	defer unlock()
	err = m.st.DoTxn(ctx, func(ctx context.Context) error {
		part, err = m.encrypt(ctx, device, padded)
		return err
	})
	return part, err
}

// encrypt runs inside the caller's lock and transaction.
func (m *Manager) encrypt(ctx context.Context, device jid.JID, padded []byte) (EncryptedPart, error) {
	addr := device.SignalAddress()
	// libsignal panics on a fresh record, so check first.
	ok, err := m.st.ContainsSession(ctx, addr)
	if err != nil {
		return EncryptedPart{}, fmt.Errorf("failed to check session: %w", err)
	} else if !ok {
		return EncryptedPart{}, fmt.Errorf("%w %s", ErrNoSession, device)
	}
	var msg protocol.CiphertextMessage
	err = guard(func() (err error) {
		msg, err = session.NewCipher(session.NewBuilderFromSignal(m.st, addr, m.ser), addr).Encrypt(ctx, padded)
		return err
	})
	if err != nil {
		return EncryptedPart{}, fmt.Errorf("failed to encrypt for %s: %w", device, mapErr(err))
	}
	part := EncryptedPart{Device: device, Type: TypeMessage, Ciphertext: msg.Serialize()}
	if msg.Type() == protocol.PREKEY_TYPE {
		part.Type = TypePreKeyMessage
	}
	return part, nil
}

// EncryptForDevices pads plaintext once and encrypts it for every device that has a
// session. Devices without one are returned in missing, in input order: fetch their
// bundles, ProcessBundle them and encrypt for them too (phash covers every device).
func (m *Manager) EncryptForDevices(ctx context.Context, devices []jid.JID, plaintext []byte) (parts []EncryptedPart, missing []jid.JID, err error) {
	padded := Pad(plaintext)
	for _, d := range devices {
		part, err := m.encryptLocked(ctx, d, padded)
		if errors.Is(err, ErrNoSession) {
			missing = append(missing, d)
			continue
		} else if err != nil {
			return nil, nil, err
		}
		parts = append(parts, part)
	}
	return parts, missing, nil
}

// Decrypt decrypts a pkmsg or msg from a device inside one store transaction, removes
// the padding and passes the plaintext to handle with the transaction's ctx. It commits
// only if handle returns nil: the ratchet step, a session created by a pkmsg and
// whatever handle wrote through ctx land together, and after a failure (or a crash)
// the same ciphertext decrypts again. A handle error comes back as *HandleError; a nil
// handle accepts the message.
func (m *Manager) Decrypt(ctx context.Context, sender jid.JID, typ string, ciphertext []byte, handle HandleFunc) (DecryptInfo, error) {
	info := DecryptInfo{Type: typ}
	handle = orAccept(handle)
	var pkmsg *protocol.PreKeySignalMessage
	var msg *protocol.SignalMessage
	err := guard(func() (err error) {
		switch typ {
		case TypePreKeyMessage:
			pkmsg, err = m.parsePreKeyMessage(ciphertext)
		case TypeMessage:
			msg, err = m.parseMessage(ciphertext)
		default:
			err = fmt.Errorf("%w %q", ErrUnknownType, typ)
		}
		return err
	})
	if err != nil {
		return info, mapErr(err)
	}
	addr := sender.SignalAddress()
	ctx, unlock := m.locks.lock(ctx, userLock(sender))
	defer unlock()
	err = m.st.DoTxn(ctx, func(ctx context.Context) error {
		var plaintext []byte
		if pkmsg != nil {
			changed, err := m.acceptIdentity(ctx, sender, pkmsg.IdentityKey())
			if err != nil {
				return err
			}
			info.IdentityChanged = changed
		}
		err := guard(func() (err error) {
			cipher := session.NewCipher(session.NewBuilderFromSignal(m.st, addr, m.ser), addr)
			if pkmsg != nil {
				plaintext, err = cipher.DecryptMessage(ctx, pkmsg)
			} else {
				plaintext, err = cipher.Decrypt(ctx, msg)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("failed to decrypt %s from %s: %w", typ, sender, mapErr(err))
		}
		return unpadAndHandle(ctx, plaintext, handle)
	})
	if err != nil {
		// Rolled back: nothing changed.
		info.IdentityChanged = false
	}
	return info, err
}

// parsePreKeyMessage and parseMessage check the key fields before libsignal sees
// them: it indexes into them unchecked.
func (m *Manager) parsePreKeyMessage(b []byte) (*protocol.PreKeySignalMessage, error) {
	if err := checkVersion(b); err != nil {
		return nil, err
	}
	st, err := m.ser.PreKeySignalMessage.Deserialize(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !validPoint(st.BaseKey) || !validPoint(st.IdentityKey) {
		return nil, fmt.Errorf("%w: bad key in prekey message", ErrMalformed)
	}
	if _, err = m.parseMessage(st.Message); err != nil {
		return nil, err
	}
	msg, err := protocol.NewPreKeySignalMessageFromStruct(st, m.ser.PreKeySignalMessage, m.ser.SignalMessage)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return msg, nil
}

// parseMessage also refuses encodings other than the canonical one: libsignal
// verifies the MAC over a re-serialized copy, so a sender's MAC can only hold for the
// canonical encoding, and refusing the others makes the MAC cover exactly the bytes
// received, as in other Signal implementations.
func (m *Manager) parseMessage(b []byte) (*protocol.SignalMessage, error) {
	if err := checkVersion(b); err != nil {
		return nil, err
	}
	st, err := m.ser.SignalMessage.Deserialize(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !validPoint(st.RatchetKey) {
		return nil, fmt.Errorf("%w: bad ratchet key", ErrMalformed)
	}
	if len(st.CipherText) == 0 || len(st.CipherText)%16 != 0 {
		return nil, fmt.Errorf("%w: ciphertext is not whole AES blocks", ErrMalformed)
	}
	msg, err := protocol.NewSignalMessageFromStruct(st, m.ser.SignalMessage)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !bytes.Equal(msg.Serialize(), b) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformed)
	}
	return msg, nil
}

// versionByte is the first byte of every version 3 message (version and current
// version, 4 bits each). libsignal reads only the high nibble and its MACs cover a
// re-serialized copy, so other values would be accepted as the same message.
const versionByte = protocol.CurrentVersion<<4 | protocol.CurrentVersion

func checkVersion(b []byte) error {
	if len(b) == 0 || b[0] != versionByte {
		return fmt.Errorf("%w: not a version %d message", ErrMalformed, protocol.CurrentVersion)
	}
	return nil
}

// validPoint accepts a serialized Curve25519 public key: the type byte and 32 bytes.
func validPoint(b []byte) bool { return len(b) == 33 && b[0] == ecc.DjbType }

func orAccept(handle HandleFunc) HandleFunc {
	if handle == nil {
		return func(context.Context, []byte) error { return nil }
	}
	return handle
}

// HandleIdentityChange handles the `<identity/>` notification for a user: the
// sessions with all its devices and their recorded identities are dropped, so the next
// message fetches fresh bundles.
func (m *Manager) HandleIdentityChange(ctx context.Context, user jid.JID) error {
	ctx, unlock := m.locks.lock(ctx, userLock(user))
	defer unlock()
	return m.st.DoTxn(ctx, func(ctx context.Context) error {
		if err := m.st.DeleteSessionsOf(ctx, user.SignalName()); err != nil {
			return fmt.Errorf("failed to drop sessions: %w", err)
		}
		if err := m.st.DeleteIdentitiesOf(ctx, user.SignalName()); err != nil {
			return fmt.Errorf("failed to drop identities: %w", err)
		}
		return nil
	})
}
