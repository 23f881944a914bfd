package gwstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Restriction is a user's sending ban after spam reports.
type Restriction struct {
	Reason string
	Until  time.Time
}

// SetBlocked blocks or unblocks blocked for blocker.
func (s *Store) SetBlocked(ctx context.Context, blocker, blocked jid.JID, block bool) error {
	var err error
	if block {
		_, err = s.db.Exec(ctx, `INSERT INTO metasim_block (network, blocker, blocked) VALUES ($1, $2, $3)
			ON CONFLICT (network, blocker, blocked) DO NOTHING`, s.network, blocker.ToUser().String(), blocked.ToUser().String())
	} else {
		_, err = s.db.Exec(ctx, `DELETE FROM metasim_block WHERE network=$1 AND blocker=$2 AND blocked=$3`,
			s.network, blocker.ToUser().String(), blocked.ToUser().String())
	}
	if err != nil {
		return fmt.Errorf("failed to change blocklist: %w", err)
	}
	return nil
}

// IsBlocked reports whether blocker blocked blocked.
func (s *Store) IsBlocked(ctx context.Context, blocker, blocked jid.JID) (bool, error) {
	ok, err := s.exists(ctx, `SELECT 1 FROM metasim_block WHERE network=$1 AND blocker=$2 AND blocked=$3`,
		s.network, blocker.ToUser().String(), blocked.ToUser().String())
	if err != nil {
		return false, fmt.Errorf("failed to check blocklist: %w", err)
	}
	return ok, nil
}

// Blocklist returns whom blocker blocked.
func (s *Store) Blocklist(ctx context.Context, blocker jid.JID) ([]jid.JID, error) {
	out, err := s.queryJIDs(ctx, `SELECT blocked FROM metasim_block WHERE network=$1 AND blocker=$2 ORDER BY blocked`,
		s.network, blocker.ToUser().String())
	if err != nil {
		return nil, fmt.Errorf("failed to read blocklist: %w", err)
	}
	return out, nil
}

// AddReport records a spam report and returns the number of distinct reporters of
// reported since its last restriction.
func (s *Store) AddReport(ctx context.Context, reported, reporter jid.JID, messageID string, at time.Time) (int, error) {
	var n int
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		_, err := s.db.Exec(ctx, `
			INSERT INTO metasim_report (network, reported, reporter, message_id, reported_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (network, reported, reporter, message_id) DO NOTHING`,
			s.network, reported.ToUser().String(), reporter.ToUser().String(), messageID, ms(at))
		if err != nil {
			return fmt.Errorf("failed to store report: %w", err)
		}
		err = s.db.QueryRow(ctx, `SELECT COUNT(DISTINCT reporter) FROM metasim_report WHERE network=$1 AND reported=$2`,
			s.network, reported.ToUser().String()).Scan(&n)
		if err != nil {
			return fmt.Errorf("failed to count reporters: %w", err)
		}
		return nil
	})
	return n, err
}

// ClearReports forgets the reports against a user (after restricting it).
func (s *Store) ClearReports(ctx context.Context, reported jid.JID) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM metasim_report WHERE network=$1 AND reported=$2`,
		s.network, reported.ToUser().String()); err != nil {
		return fmt.Errorf("failed to clear reports: %w", err)
	}
	return nil
}

// SetRestriction restricts a user until r.Until.
func (s *Store) SetRestriction(ctx context.Context, user jid.JID, r Restriction) error {
	_, err := s.db.Exec(ctx, `INSERT INTO metasim_restriction (network, user_jid, reason, until_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (network, user_jid) DO UPDATE SET reason=excluded.reason, until_ts=excluded.until_ts`,
		s.network, user.ToUser().String(), r.Reason, ms(r.Until))
	if err != nil {
		return fmt.Errorf("failed to restrict: %w", err)
	}
	return nil
}

// ClearRestriction lifts a user's restriction.
func (s *Store) ClearRestriction(ctx context.Context, user jid.JID) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM metasim_restriction WHERE network=$1 AND user_jid=$2`,
		s.network, user.ToUser().String()); err != nil {
		return fmt.Errorf("failed to lift restriction: %w", err)
	}
	return nil
}

// GetRestriction returns a user's restriction, or nil when it has none.
func (s *Store) GetRestriction(ctx context.Context, user jid.JID) (*Restriction, error) {
	var r Restriction
	var until int64
	err := s.db.QueryRow(ctx, `SELECT reason, until_ts FROM metasim_restriction WHERE network=$1 AND user_jid=$2`,
		s.network, user.ToUser().String()).Scan(&r.Reason, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("failed to get restriction: %w", err)
	}
	r.Until = fromMS(until)
	return &r, nil
}

// AddContact records that from wrote to to.
func (s *Store) AddContact(ctx context.Context, from, to jid.JID, at time.Time) error {
	_, err := s.db.Exec(ctx, `INSERT INTO metasim_contact (network, from_user, to_user, first_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (network, from_user, to_user) DO NOTHING`,
		s.network, from.ToUser().String(), to.ToUser().String(), ms(at))
	if err != nil {
		return fmt.Errorf("failed to record contact: %w", err)
	}
	return nil
}

// HasWritten reports whether from ever wrote to to.
func (s *Store) HasWritten(ctx context.Context, from, to jid.JID) (bool, error) {
	ok, err := s.exists(ctx, `SELECT 1 FROM metasim_contact WHERE network=$1 AND from_user=$2 AND to_user=$3`,
		s.network, from.ToUser().String(), to.ToUser().String())
	if err != nil {
		return false, fmt.Errorf("failed to check contact: %w", err)
	}
	return ok, nil
}

// Contacts lists the users that wrote to user or that user wrote to.
func (s *Store) Contacts(ctx context.Context, user jid.JID) ([]jid.JID, error) {
	u := user.ToUser().String()
	out, err := s.queryJIDs(ctx, `
		SELECT to_user FROM metasim_contact WHERE network=$1 AND from_user=$2
		UNION SELECT from_user FROM metasim_contact WHERE network=$1 AND to_user=$2`, s.network, u)
	if err != nil {
		return nil, fmt.Errorf("failed to list contacts: %w", err)
	}
	jid.Sort(out)
	return out, nil
}

// ConversationStats says, for an account, whether peer already counts as a
// conversation started since since, how many were started since then, and when the
// oldest of those started.
func (s *Store) ConversationStats(ctx context.Context, account, peer jid.JID, since time.Time) (started bool, count int, oldest time.Time, err error) {
	started, err = s.exists(ctx, `SELECT 1 FROM metasim_conversation WHERE network=$1 AND account=$2 AND peer=$3 AND started_at>$4`,
		s.network, account.ToUser().String(), peer.ToUser().String(), ms(since))
	if err != nil {
		return false, 0, time.Time{}, fmt.Errorf("failed to check conversation: %w", err)
	}
	var minStarted sql.NullInt64
	err = s.db.QueryRow(ctx, `SELECT COUNT(*), MIN(started_at) FROM metasim_conversation WHERE network=$1 AND account=$2 AND started_at>$3`,
		s.network, account.ToUser().String(), ms(since)).Scan(&count, &minStarted)
	if err != nil {
		return false, 0, time.Time{}, fmt.Errorf("failed to count conversations: %w", err)
	}
	if minStarted.Valid {
		oldest = fromMS(minStarted.Int64)
	}
	return started, count, oldest, nil
}

// StartConversation records that account started a conversation with peer at at.
func (s *Store) StartConversation(ctx context.Context, account, peer jid.JID, at time.Time) error {
	_, err := s.db.Exec(ctx, `INSERT INTO metasim_conversation (network, account, peer, started_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (network, account, peer) DO UPDATE SET started_at=excluded.started_at`,
		s.network, account.ToUser().String(), peer.ToUser().String(), ms(at))
	if err != nil {
		return fmt.Errorf("failed to record conversation: %w", err)
	}
	return nil
}
