package interop

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
)

// keyState serializes uploads and rotations, and remembers a signed prekey rotated
// locally whose rotate iq failed, so that the next maintenance sends it again.
type keyState struct {
	mu              sync.Mutex
	pendingRotation *signal.SignedPreKey
}

// maintainKeys runs after every <success>: an account that never uploaded keys
// uploads a batch; otherwise the count is checked and refilled below the low-water
// mark. Then the signed prekey is rotated when due.
func (a *Account) maintainKeys(ctx context.Context, isNew bool) error {
	if isNew {
		if err := a.uploadPreKeys(ctx, UploadNew); err != nil {
			return err
		}
	} else {
		count, err := a.client.PreKeyCount(ctx)
		if err != nil {
			return err
		}
		if count < signal.MinPreKeys {
			if err := a.uploadPreKeys(ctx, UploadLow); err != nil {
				return err
			}
		}
	}
	err := a.rotateSignedPreKey(ctx)
	if errors.Is(err, errcode.ErrNoKeys) || errors.Is(err, errcode.ErrMalformed) {
		// The gateway holds no keys for us (412), or keys of an identity we no longer
		// have, so our new signed prekey does not verify against it (400): a full
		// upload carries identity, registration and signed prekey together.
		a.logger(ctx).Warn().Err(err).Msg("Gateway refused the signed prekey rotation, uploading all keys again")
		return a.uploadPreKeys(ctx, UploadRepair)
	}
	return err
}

// UploadPreKeys uploads a batch of one-time prekeys (with the identity, registration
// id and current signed prekey) now. The Account does this by itself when needed; this
// is for an operator's "repair keys" command.
func (a *Account) UploadPreKeys(ctx context.Context) error {
	return a.uploadPreKeys(ctx, UploadLow)
}

func (a *Account) uploadPreKeys(ctx context.Context, reason UploadReason) error {
	a.keys.mu.Lock()
	defer a.keys.mu.Unlock()
	up, err := a.mgr.PreKeyUpload(ctx, signal.PreKeyBatch)
	if err != nil {
		return fmt.Errorf("failed to prepare prekey upload: %w", err)
	}
	if err = a.client.UploadPreKeys(ctx, uploadToWire(up)); err != nil {
		return err
	}
	if err = a.mgr.MarkUploaded(ctx, up); err != nil {
		return err
	}
	// The upload carried the newest signed prekey, so a failed rotation is now moot.
	if p := a.keys.pendingRotation; p != nil && p.ID == up.SignedPreKey.ID {
		a.keys.pendingRotation = nil
	}
	a.logger(ctx).Info().Int("count", len(up.PreKeys)).Str("reason", string(reason)).Msg("Uploaded prekeys")
	a.emit(&PreKeysUploaded{Count: len(up.PreKeys), Reason: reason})
	return nil
}

// rotateSignedPreKey makes and announces a new signed prekey when the newest is
// older than signal.SignedPreKeyRotation (the rotate iq of PROTOCOL.md section 5).
// The old one stays usable for signal.SignedPreKeyRetention, for prekey messages
// built on it before the gateway learned the new one.
func (a *Account) rotateSignedPreKey(ctx context.Context) error {
	a.keys.mu.Lock()
	defer a.keys.mu.Unlock()
	spk := a.keys.pendingRotation
	if spk == nil {
		var err error
		if spk, err = a.mgr.RotateSignedPreKey(ctx, a.now()); err != nil {
			return err
		} else if spk == nil {
			return nil
		}
	}
	// Kept until the gateway accepts it: the key is already the newest locally, so
	// RotateSignedPreKey would not offer it again for 7 days.
	a.keys.pendingRotation = spk
	if err := a.client.RotateSignedPreKey(ctx, signedPreKeyToWire(*spk)); err != nil {
		return err
	}
	a.keys.pendingRotation = nil
	a.emit(&SignedPreKeyRotated{ID: spk.ID})
	return nil
}

func uploadToWire(up *signal.PreKeyUpload) PreKeyUpload {
	out := PreKeyUpload{
		RegistrationID: up.RegistrationID,
		Identity:       up.IdentityKey,
		PreKeys:        make([]PreKey, len(up.PreKeys)),
		SignedPreKey:   signedPreKeyToWire(up.SignedPreKey),
	}
	for i, k := range up.PreKeys {
		out.PreKeys[i] = PreKey{ID: k.ID, Pub: k.Public}
	}
	return out
}

func signedPreKeyToWire(k signal.SignedPreKey) SignedPreKey {
	return SignedPreKey{ID: k.ID, Pub: k.Public, Signature: k.Signature}
}

// bundleFromWire converts a fetched bundle for the Signal layer.
func bundleFromWire(b FetchedBundle) *signal.PreKeyBundle {
	out := &signal.PreKeyBundle{
		RegistrationID: b.RegistrationID,
		IdentityKey:    b.Identity,
		SignedPreKey:   signal.SignedPreKey{ID: b.SignedPreKey.ID, Public: b.SignedPreKey.Pub, Signature: b.SignedPreKey.Signature},
	}
	if b.PreKey != nil {
		out.PreKey = &signal.PreKey{ID: b.PreKey.ID, Public: b.PreKey.Pub}
	}
	return out
}
