package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/util/dbutil"
)

// LoadSession returns the session with a remote device, or a new fresh record when
// there is none (libsignal's convention). The record is the caller's to mutate; it is
// cached again only when passed to StoreSession.
func (s *signalStore) LoadSession(ctx context.Context, addr *protocol.SignalAddress) (*record.Session, error) {
	name, dev := addr.Name(), addr.DeviceID()
	t := s.c.txnFrom(ctx)
	v, hit, tk := s.sessions.get(t, name, dev, func(v cachedSession) cachedSession {
		v.rec = nil
		return v
	})
	if hit && !v.present {
		return record.NewSession(s.ser.Session, s.ser.State), nil
	} else if hit && v.rec != nil {
		return v.rec, nil
	}
	var raw []byte
	err := s.db.QueryRow(ctx,
		`SELECT session FROM interop_session WHERE account_jid=$1 AND their_name=$2 AND device_id=$3`,
		s.jid, name, dev).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		s.sessions.fill(t, name, dev, cachedSession{}, tk)
		return record.NewSession(s.ser.Session, s.ser.State), nil
	} else if err != nil {
		return nil, fmt.Errorf("failed to load session: %w", err)
	}
	rec, err := decode("session", raw, func(b []byte) (*record.Session, error) {
		return record.NewSessionFromBytes(b, s.ser.Session, s.ser.State)
	})
	if err != nil {
		return nil, err
	}
	// The decoded record goes to the caller, so the cache only learns that it exists.
	s.sessions.fill(t, name, dev, cachedSession{present: true}, tk)
	return rec, nil
}

// StoreSession writes the session and caches rec itself for the next LoadSession, so
// the caller must not change rec after storing it (libsignal does not).
func (s *signalStore) StoreSession(ctx context.Context, addr *protocol.SignalAddress, rec *record.Session) error {
	if rec == nil {
		return errors.New("failed to store session: nil record")
	}
	name, dev := addr.Name(), addr.DeviceID()
	raw := rec.Serialize()
	return s.write(ctx, func(ctx context.Context, t *txn) error {
		s.sessions.claim(t, name)
		_, err := s.db.Exec(ctx, `
			INSERT INTO interop_session (account_jid, their_name, device_id, session) VALUES ($1, $2, $3, $4)
			ON CONFLICT (account_jid, their_name, device_id) DO UPDATE SET session=excluded.session`,
			s.jid, name, dev, raw)
		if err != nil {
			return fmt.Errorf("failed to store session: %w", err)
		}
		cached := cachedSession{rec: rec, present: true}
		if rec.IsFresh() {
			// A record made by LoadSession for a missing session keeps saying it is
			// fresh after libsignal filled it in; handed out again, it would make the
			// next ProcessBundle overwrite this state instead of archiving it. A
			// record decoded from SQL is never fresh, so let the next load decode.
			cached.rec = nil
		}
		s.sessions.put(t, name, dev, cached)
		return nil
	})
}

func (s *signalStore) ContainsSession(ctx context.Context, addr *protocol.SignalAddress) (bool, error) {
	name, dev := addr.Name(), addr.DeviceID()
	t := s.c.txnFrom(ctx)
	v, hit, tk := s.sessions.get(t, name, dev, nil)
	if hit {
		return v.present, nil
	}
	var exists bool
	err := s.db.QueryRow(ctx,
		`SELECT EXISTS(SELECT 1 FROM interop_session WHERE account_jid=$1 AND their_name=$2 AND device_id=$3)`,
		s.jid, name, dev).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("failed to check session: %w", err)
	}
	s.sessions.fill(t, name, dev, cachedSession{present: exists}, tk)
	return exists, nil
}

// GetSubDeviceSessions lists the device ids of one remote user that we have sessions
// with, in ascending order.
func (s *signalStore) GetSubDeviceSessions(ctx context.Context, name string) ([]uint32, error) {
	rows, err := s.db.Query(ctx,
		`SELECT device_id FROM interop_session WHERE account_jid=$1 AND their_name=$2 ORDER BY device_id`,
		s.jid, name)
	devs, err := dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[uint32], err).AsList()
	if err != nil {
		return nil, fmt.Errorf("failed to list device sessions: %w", err)
	}
	return devs, nil
}

func (s *signalStore) DeleteSession(ctx context.Context, addr *protocol.SignalAddress) error {
	name, dev := addr.Name(), addr.DeviceID()
	return s.write(ctx, func(ctx context.Context, t *txn) error {
		s.sessions.claim(t, name)
		_, err := s.db.Exec(ctx,
			`DELETE FROM interop_session WHERE account_jid=$1 AND their_name=$2 AND device_id=$3`,
			s.jid, name, dev)
		if err != nil {
			return fmt.Errorf("failed to delete session: %w", err)
		}
		s.sessions.put(t, name, dev, cachedSession{})
		return nil
	})
}

func (s *signalStore) DeleteAllSessions(ctx context.Context) error {
	return s.write(ctx, func(ctx context.Context, t *txn) error {
		s.sessions.claimAll(t)
		if _, err := s.db.Exec(ctx, `DELETE FROM interop_session WHERE account_jid=$1`, s.jid); err != nil {
			return fmt.Errorf("failed to delete all sessions: %w", err)
		}
		s.sessions.evictAll()
		return nil
	})
}

func (s *signalStore) DeleteSessionsOf(ctx context.Context, name string) error {
	return s.write(ctx, func(ctx context.Context, t *txn) error {
		s.sessions.claim(t, name)
		_, err := s.db.Exec(ctx, `DELETE FROM interop_session WHERE account_jid=$1 AND their_name=$2`, s.jid, name)
		if err != nil {
			return fmt.Errorf("failed to delete sessions: %w", err)
		}
		s.sessions.evictName(name)
		return nil
	})
}
