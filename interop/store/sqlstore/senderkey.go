package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

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

// holderChunk is how many holders one INSERT writes: 2 + holderChunk parameters stay
// well under SQLite's limit (32,766) and PostgreSQL's (65,535).
const holderChunk = 1000

// AddSenderKeyHolders writes the holders in one multi-row INSERT per holderChunk
// devices: a group's 512 devices one row at a time cost 0.4 s on PostgreSQL.
func (s *signalStore) AddSenderKeyHolders(ctx context.Context, group jid.JID, devices []jid.JID) error {
	insert := func(ctx context.Context, devices []jid.JID) error {
		var q strings.Builder
		q.WriteString(`INSERT INTO interop_sender_key_holder (account_jid, group_jid, device_jid) VALUES `)
		args := make([]any, 2, 2+len(devices))
		args[0], args[1] = s.jid, group.String()
		for i, device := range devices {
			if i > 0 {
				q.WriteString(", ")
			}
			args = append(args, device.String())
			fmt.Fprintf(&q, "($1, $2, $%d)", len(args))
		}
		q.WriteString(` ON CONFLICT (account_jid, group_jid, device_jid) DO NOTHING`)
		_, err := s.db.Exec(ctx, q.String(), args...)
		return err
	}
	var err error
	switch {
	case len(devices) == 0:
		return nil
	case len(devices) <= holderChunk:
		err = insert(ctx, devices)
	default:
		err = s.DoTxn(ctx, func(ctx context.Context) error {
			for chunk := range slices.Chunk(devices, holderChunk) {
				if err := insert(ctx, chunk); err != nil {
					return err
				}
			}
			return nil
		})
	}
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
