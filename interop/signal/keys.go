package signal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/util/keyhelper"
	"go.mau.fi/libsignal/util/optional"
	"golang.org/x/crypto/curve25519"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

// Key policy of PROTOCOL.md section 5.
const (
	PreKeyBatch           = 50                  // one-time prekeys per upload
	MinPreKeys            = 10                  // upload more when the gateway has fewer
	SignedPreKeyRotation  = 7 * 24 * time.Hour  // rotate the signed prekey this often
	SignedPreKeyRetention = 30 * 24 * time.Hour // keep older signed prekeys this long
	KeyType               = 0x05                // the <type> byte: Curve25519
	maxKeyID              = 0xFFFFFF            // ids are 3 bytes on the wire
)

// PreKey is a one-time prekey as uploaded and handed out: an id (3 bytes on the wire)
// and the 32-byte Curve25519 public key.
type PreKey struct {
	ID     uint32
	Public [32]byte
}

// SignedPreKey is a signed prekey with its XEdDSA signature by the identity key over
// the 33-byte serialized public key (type byte included).
type SignedPreKey struct {
	ID        uint32
	Public    [32]byte
	Signature [64]byte
}

// PreKeyUpload is the content of the `encrypt` set iq.
type PreKeyUpload struct {
	RegistrationID uint32
	IdentityKey    [32]byte
	PreKeys        []PreKey
	SignedPreKey   SignedPreKey
}

// PreKeyBundle is one device's keys as fetched from the gateway (or as put in a
// retry receipt): everything needed to start a session with it.
type PreKeyBundle struct {
	RegistrationID uint32
	IdentityKey    [32]byte
	SignedPreKey   SignedPreKey
	PreKey         *PreKey // nil when the gateway had no one-time prekey left
}

// Bundle makes the bundle a key directory hands out for an uploaded device, with one
// of its one-time prekeys (or nil).
func (u *PreKeyUpload) Bundle(preKey *PreKey) PreKeyBundle {
	return PreKeyBundle{
		RegistrationID: u.RegistrationID,
		IdentityKey:    u.IdentityKey,
		SignedPreKey:   u.SignedPreKey,
		PreKey:         preKey,
	}
}

// Verify checks the signed prekey's signature against the identity key.
func (b *PreKeyBundle) Verify() error {
	spk := ecc.NewDjbECPublicKey(b.SignedPreKey.Public)
	if !ecc.VerifySignature(ecc.NewDjbECPublicKey(b.IdentityKey), spk.Serialize(), b.SignedPreKey.Signature) {
		return fmt.Errorf("%w: signed prekey signature does not verify", ErrInvalidBundle)
	}
	return nil
}

// Libsignal converts the bundle for libsignal's session builder.
func (b *PreKeyBundle) Libsignal(deviceID uint32) *prekey.Bundle {
	preKeyID := optional.NewEmptyUint32()
	// An absent one-time prekey must be an untyped nil interface: libsignal tests
	// it against nil.
	var preKeyPub ecc.ECPublicKeyable
	if b.PreKey != nil {
		preKeyID = optional.NewOptionalUint32(b.PreKey.ID)
		preKeyPub = ecc.NewDjbECPublicKey(b.PreKey.Public)
	}
	return prekey.NewBundle(b.RegistrationID, deviceID, preKeyID, b.SignedPreKey.ID,
		preKeyPub, ecc.NewDjbECPublicKey(b.SignedPreKey.Public), b.SignedPreKey.Signature,
		identity.NewKey(ecc.NewDjbECPublicKey(b.IdentityKey)))
}

// publicOf derives the public key from a record's private key. Stores may hand out
// records that went through libsignal's record serialization, which corrupts the
// public key (it keeps the first 32 of the 33 serialized bytes); the private key
// survives, so what we publish is always derived from it.
func publicOf(kp *ecc.ECKeyPair) ([32]byte, error) {
	priv := kp.PrivateKey().Serialize()
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return [32]byte{}, fmt.Errorf("failed to derive public key: %w", err)
	}
	return [32]byte(pub), nil
}

func preKeyOf(rec *record.PreKey) (PreKey, error) {
	pub, err := publicOf(rec.KeyPair())
	return PreKey{ID: rec.ID().Value, Public: pub}, err
}

func signedPreKeyOf(rec *record.SignedPreKey) (SignedPreKey, error) {
	pub, err := publicOf(rec.KeyPair())
	return SignedPreKey{ID: rec.ID(), Public: pub, Signature: rec.Signature()}, err
}

func (m *Manager) identityPublic() [32]byte {
	return m.st.Account().IdentityKey.PublicKey().PublicKey().PublicKey()
}

// currentSignedPreKey returns the newest signed prekey, making the first one if there
// is none. Callers hold keysMu.
func (m *Manager) currentSignedPreKey(ctx context.Context) (SignedPreKey, error) {
	latest, err := m.st.LatestSignedPreKey(ctx)
	if errors.Is(err, store.ErrNotFound) {
		rec, err := m.newSignedPreKey(ctx, 1, time.Now())
		if err != nil {
			return SignedPreKey{}, err
		}
		return signedPreKeyOf(rec)
	} else if err != nil {
		return SignedPreKey{}, fmt.Errorf("failed to load signed prekey: %w", err)
	}
	return signedPreKeyOf(latest.Record)
}

func (m *Manager) newSignedPreKey(ctx context.Context, id uint32, now time.Time) (*record.SignedPreKey, error) {
	rec, err := keyhelper.GenerateSignedPreKey(m.st.Account().IdentityKey, id, m.ser.SignedPreKeyRecord)
	if err != nil {
		return nil, fmt.Errorf("failed to generate signed prekey: %w", err)
	}
	if err = m.st.StoreSignedPreKeyAt(ctx, rec, now); err != nil {
		return nil, fmt.Errorf("failed to store signed prekey: %w", err)
	}
	return rec, nil
}

// PreKeyUpload builds the upload for count one-time prekeys: prekeys generated earlier
// but never marked uploaded go first, new ones fill the rest. The signed prekey is the
// current one (made now if there is none). After the gateway accepted it, call
// MarkUploaded.
func (m *Manager) PreKeyUpload(ctx context.Context, count int) (*PreKeyUpload, error) {
	if count < 0 || count > maxKeyID {
		return nil, fmt.Errorf("cannot upload %d prekeys", count)
	}
	m.keysMu.Lock()
	defer m.keysMu.Unlock()
	up := &PreKeyUpload{RegistrationID: m.st.Account().RegistrationID, IdentityKey: m.identityPublic()}
	err := m.st.DoTxn(ctx, func(ctx context.Context) error {
		recs, err := m.st.UnuploadedPreKeys(ctx)
		if err != nil {
			return fmt.Errorf("failed to load unuploaded prekeys: %w", err)
		}
		if len(recs) > count {
			recs = recs[:count]
		} else if len(recs) < count {
			fresh, err := m.st.GeneratePreKeys(ctx, count-len(recs))
			if err != nil {
				return fmt.Errorf("failed to generate prekeys: %w", err)
			}
			recs = append(recs, fresh...)
		}
		up.PreKeys = make([]PreKey, len(recs))
		for i, rec := range recs {
			if up.PreKeys[i], err = preKeyOf(rec); err != nil {
				return err
			}
		}
		up.SignedPreKey, err = m.currentSignedPreKey(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return up, nil
}

// MarkUploaded records that the gateway accepted an upload's one-time prekeys.
func (m *Manager) MarkUploaded(ctx context.Context, up *PreKeyUpload) error {
	ids := make([]uint32, len(up.PreKeys))
	for i, k := range up.PreKeys {
		ids[i] = k.ID
	}
	if err := m.st.MarkPreKeysUploaded(ctx, ids); err != nil {
		return fmt.Errorf("failed to mark prekeys uploaded: %w", err)
	}
	return nil
}

// RotateSignedPreKey makes a new signed prekey when the newest is older than
// SignedPreKeyRotation (or there is none) and prunes those older than
// SignedPreKeyRetention. It returns the new key for the rotate iq, or nil when none
// was due.
func (m *Manager) RotateSignedPreKey(ctx context.Context, now time.Time) (*SignedPreKey, error) {
	m.keysMu.Lock()
	defer m.keysMu.Unlock()
	var out *SignedPreKey
	err := m.st.DoTxn(ctx, func(ctx context.Context) error {
		nextID := uint32(1)
		latest, err := m.st.LatestSignedPreKey(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("failed to load signed prekey: %w", err)
		case now.Sub(latest.CreatedAt) < SignedPreKeyRotation:
			return nil
		default:
			nextID = latest.Record.ID()%maxKeyID + 1
		}
		rec, err := m.newSignedPreKey(ctx, nextID, now)
		if err != nil {
			return err
		}
		// Peers may still send prekey messages built on an older key for a while.
		if err = m.st.PruneSignedPreKeys(ctx, now.Add(-SignedPreKeyRetention)); err != nil {
			return fmt.Errorf("failed to prune signed prekeys: %w", err)
		}
		spk, err := signedPreKeyOf(rec)
		out = &spk
		return err
	})
	if err != nil {
		return nil, err
	}
	if out != nil {
		m.logger(ctx).Info().Uint32("signed_prekey_id", out.ID).Msg("Rotated signed prekey")
	}
	return out, nil
}

// OwnBundle returns our bundle with one new one-time prekey, which counts as handed
// out (marked uploaded, so no later upload offers it again). For the simulator's key
// directory and for retry receipts.
func (m *Manager) OwnBundle(ctx context.Context) (*PreKeyBundle, error) {
	m.keysMu.Lock()
	defer m.keysMu.Unlock()
	b := &PreKeyBundle{RegistrationID: m.st.Account().RegistrationID, IdentityKey: m.identityPublic()}
	err := m.st.DoTxn(ctx, func(ctx context.Context) error {
		recs, err := m.st.GeneratePreKeys(ctx, 1)
		if err != nil {
			return fmt.Errorf("failed to generate prekey: %w", err)
		}
		pk, err := preKeyOf(recs[0])
		if err != nil {
			return err
		}
		b.PreKey = &pk
		if err = m.st.MarkPreKeysUploaded(ctx, []uint32{pk.ID}); err != nil {
			return fmt.Errorf("failed to mark prekey handed out: %w", err)
		}
		b.SignedPreKey, err = m.currentSignedPreKey(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}
