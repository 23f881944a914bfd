package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	grouprecord "go.mau.fi/libsignal/groups/state/record"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Sender key rows are keyed by the SenderKeyName's group id as the Signal layer builds
// it; ResetSenderKey assumes that id is the group JID's String().

func (s *signalStore) StoreSenderKey(ctx context.Context, name *protocol.SenderKeyName, rec *grouprecord.SenderKey) error {
	if rec == nil {
		return errors.New("failed to store sender key: nil record")
	}
	sender := name.Sender()
	_, err := s.db.Exec(ctx, `
		INSERT INTO interop_sender_key (account_jid, group_id, sender_name, sender_device, record)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (account_jid, group_id, sender_name, sender_device) DO UPDATE SET record=excluded.record`,
		s.jid, name.GroupID(), sender.Name(), sender.DeviceID(), rec.Serialize())
	if err != nil {
		return fmt.Errorf("failed to store sender key: %w", err)
	}
	return nil
}

// LoadSenderKey returns a sender key, or a new empty record when there is none
// (libsignal's GroupCipher checks IsEmpty).
func (s *signalStore) LoadSenderKey(ctx context.Context, name *protocol.SenderKeyName) (*grouprecord.SenderKey, error) {
	sender := name.Sender()
	var raw []byte
	err := s.db.QueryRow(ctx, `
		SELECT record FROM interop_sender_key
		WHERE account_jid=$1 AND group_id=$2 AND sender_name=$3 AND sender_device=$4`,
		s.jid, name.GroupID(), sender.Name(), sender.DeviceID()).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return grouprecord.NewSenderKey(s.ser.SenderKeyRecord, s.ser.SenderKeyState), nil
	} else if err != nil {
		return nil, fmt.Errorf("failed to load sender key: %w", err)
	}
	return decode("sender key", raw, func(b []byte) (*grouprecord.SenderKey, error) {
		return grouprecord.NewSenderKeyFromBytes(b, s.ser.SenderKeyRecord, s.ser.SenderKeyState)
	})
}

func (s *signalStore) SenderKeyHolders(ctx context.Context, group jid.JID) (map[jid.JID]struct{}, error) {
	rows, err := s.db.Query(ctx,
		`SELECT device_jid FROM interop_sender_key_holder WHERE account_jid=$1 AND group_jid=$2`,
		s.jid, group.String())
	holders := make(map[jid.JID]struct{})
	err = dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[string], err).Iter(func(raw string) (bool, error) {
		device, err := jid.Parse(raw)
		if err != nil {
			return false, fmt.Errorf("corrupt holder jid: %w", err)
		}
		holders[device] = struct{}{}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to load sender key holders: %w", err)
	}
	return holders, nil
}

func (s *signalStore) AddSenderKeyHolders(ctx context.Context, group jid.JID, devices []jid.JID) error {
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		for _, device := range devices {
			_, err := s.db.Exec(ctx, `
				INSERT INTO interop_sender_key_holder (account_jid, group_jid, device_jid) VALUES ($1, $2, $3)
				ON CONFLICT (account_jid, group_jid, device_jid) DO NOTHING`,
				s.jid, group.String(), device.String())
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to add sender key holders: %w", err)
	}
	return nil
}

// ResetSenderKey drops our own sender key for the group (sender = this account) and
// the list of its holders; other members' sender keys stay.
func (s *signalStore) ResetSenderKey(ctx context.Context, group jid.JID) error {
	own := s.acc.JID.SignalAddress()
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		_, err := s.db.Exec(ctx, `
			DELETE FROM interop_sender_key
			WHERE account_jid=$1 AND group_id=$2 AND sender_name=$3 AND sender_device=$4`,
			s.jid, group.String(), own.Name(), own.DeviceID())
		if err != nil {
			return err
		}
		_, err = s.db.Exec(ctx,
			`DELETE FROM interop_sender_key_holder WHERE account_jid=$1 AND group_jid=$2`, s.jid, group.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to reset sender key: %w", err)
	}
	return nil
}
