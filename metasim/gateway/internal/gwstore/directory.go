package gwstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// User is a Meta user of the directory.
type User struct {
	JID          jid.JID
	Phone        string // E.164 digits; for WhatsApp users the JID's user part
	Name         string
	ReadReceipts bool
	EEA          bool
	CreatedAt    time.Time
	OptIns       []uint16 // integrators this user allowed (third-party chats on)
}

// Device is one device of a Meta user.
type Device struct {
	JID       jid.JID
	CreatedAt time.Time
}

// Account is a third-party account known to the gateway.
type Account struct {
	JID          jid.JID
	Integrator   uint16
	ReadReceipts bool
	FirstSeen    time.Time
	LastSeen     time.Time
}

// CreateUser adds a Meta user with its device 0.
func (s *Store) CreateUser(ctx context.Context, u User) error {
	return s.DoTxn(ctx, func(ctx context.Context) error {
		ok, err := s.exists(ctx, `SELECT 1 FROM metasim_user WHERE network=$1 AND jid=$2`, s.network, u.JID.String())
		if err != nil {
			return fmt.Errorf("failed to check user: %w", err)
		} else if ok {
			return ErrExists
		}
		_, err = s.db.Exec(ctx, `
			INSERT INTO metasim_user (network, jid, phone, name, read_receipts, eea, next_device, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 1, $7)`,
			s.network, u.JID.String(), u.Phone, u.Name, u.ReadReceipts, u.EEA, ms(u.CreatedAt))
		if err != nil {
			return fmt.Errorf("failed to insert user: %w", err)
		}
		_, err = s.db.Exec(ctx, `
			INSERT INTO metasim_device (network, jid, user_jid, device_id, created_at) VALUES ($1, $2, $2, 0, $3)`,
			s.network, u.JID.String(), ms(u.CreatedAt))
		if err != nil {
			return fmt.Errorf("failed to insert device 0: %w", err)
		}
		return nil
	})
}

// UpdateUser changes a user's options (everything but the JID and creation time).
func (s *Store) UpdateUser(ctx context.Context, u User) error {
	res, err := s.db.Exec(ctx, `
		UPDATE metasim_user SET phone=$3, name=$4, read_receipts=$5, eea=$6 WHERE network=$1 AND jid=$2`,
		s.network, u.JID.String(), u.Phone, u.Name, u.ReadReceipts, u.EEA)
	if err != nil {
		return fmt.Errorf("failed to update user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

const userColumns = `jid, phone, name, read_receipts, eea, created_at`

func (s *Store) scanUser(row interface{ Scan(...any) error }) (*User, error) {
	var u User
	var raw string
	var created int64
	if err := row.Scan(&raw, &u.Phone, &u.Name, &u.ReadReceipts, &u.EEA, &created); err != nil {
		return nil, err
	}
	j, err := parseJID(raw)
	if err != nil {
		return nil, err
	}
	u.JID, u.CreatedAt = j, fromMS(created)
	return &u, nil
}

// GetUser returns a user with its opt-ins, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, user jid.JID) (*User, error) {
	u, err := s.scanUser(s.db.QueryRow(ctx,
		`SELECT `+userColumns+` FROM metasim_user WHERE network=$1 AND jid=$2`, s.network, user.ToUser().String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("failed to get user: %w", err)
	}
	if u.OptIns, err = s.optIns(ctx, u.JID); err != nil {
		return nil, err
	}
	return u, nil
}

// FindUserByPhone returns the user with that phone number, or ErrNotFound.
func (s *Store) FindUserByPhone(ctx context.Context, phone string) (*User, error) {
	var raw string
	err := s.db.QueryRow(ctx, `SELECT jid FROM metasim_user WHERE network=$1 AND phone=$2 ORDER BY created_at LIMIT 1`,
		s.network, phone).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("failed to find user by phone: %w", err)
	}
	j, err := parseJID(raw)
	if err != nil {
		return nil, err
	}
	return s.GetUser(ctx, j)
}

// ListUsers returns every user, oldest first.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.Query(ctx, `SELECT `+userColumns+` FROM metasim_user WHERE network=$1 ORDER BY created_at, jid`, s.network)
	if err != nil {
		return nil, fmt.Errorf("failed to list users: %w", err)
	}
	var out []User
	for rows.Next() {
		u, err := s.scanUser(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to list users: %w", err)
		}
		out = append(out, *u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list users: %w", err)
	}
	for i := range out {
		if out[i].OptIns, err = s.optIns(ctx, out[i].JID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) optIns(ctx context.Context, user jid.JID) ([]uint16, error) {
	rows, err := s.db.Query(ctx, `SELECT integrator FROM metasim_optin WHERE network=$1 AND user_jid=$2 ORDER BY integrator`,
		s.network, user.String())
	if err != nil {
		return nil, fmt.Errorf("failed to get opt-ins: %w", err)
	}
	defer rows.Close()
	var out []uint16
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("failed to get opt-ins: %w", err)
		}
		out = append(out, uint16(id))
	}
	return out, rows.Err()
}

// SetOptIn allows or disallows an integrator for a user.
func (s *Store) SetOptIn(ctx context.Context, user jid.JID, integrator uint16, allowed bool) error {
	var err error
	if allowed {
		_, err = s.db.Exec(ctx, `INSERT INTO metasim_optin (network, user_jid, integrator) VALUES ($1, $2, $3)
			ON CONFLICT (network, user_jid, integrator) DO NOTHING`, s.network, user.ToUser().String(), int64(integrator))
	} else {
		_, err = s.db.Exec(ctx, `DELETE FROM metasim_optin WHERE network=$1 AND user_jid=$2 AND integrator=$3`,
			s.network, user.ToUser().String(), int64(integrator))
	}
	if err != nil {
		return fmt.Errorf("failed to set opt-in: %w", err)
	}
	return nil
}

// IsOptedIn reports whether the user allowed the integrator.
func (s *Store) IsOptedIn(ctx context.Context, user jid.JID, integrator uint16) (bool, error) {
	ok, err := s.exists(ctx, `SELECT 1 FROM metasim_optin WHERE network=$1 AND user_jid=$2 AND integrator=$3`,
		s.network, user.ToUser().String(), int64(integrator))
	if err != nil {
		return false, fmt.Errorf("failed to check opt-in: %w", err)
	}
	return ok, nil
}

// AddDevice registers the user's next device id and returns its JID.
func (s *Store) AddDevice(ctx context.Context, user jid.JID, now time.Time) (jid.JID, error) {
	var dev jid.JID
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		var next int64
		err := s.db.QueryRow(ctx, `SELECT next_device FROM metasim_user WHERE network=$1 AND jid=$2`,
			s.network, user.ToUser().String()).Scan(&next)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return fmt.Errorf("failed to read next device id: %w", err)
		}
		if next < 1 || next > 0xFFFF {
			return fmt.Errorf("user %s has no free device id left", user)
		}
		dev = user.ToUser().WithDevice(uint16(next))
		if _, err = s.db.Exec(ctx, `UPDATE metasim_user SET next_device=$3 WHERE network=$1 AND jid=$2`,
			s.network, user.ToUser().String(), next+1); err != nil {
			return fmt.Errorf("failed to bump device id: %w", err)
		}
		_, err = s.db.Exec(ctx, `INSERT INTO metasim_device (network, jid, user_jid, device_id, created_at) VALUES ($1, $2, $3, $4, $5)`,
			s.network, dev.String(), user.ToUser().String(), next, ms(now))
		if err != nil {
			return fmt.Errorf("failed to insert device: %w", err)
		}
		return nil
	})
	return dev, err
}

// RemoveDevice deletes a device, its keys and its queue.
func (s *Store) RemoveDevice(ctx context.Context, device jid.JID) error {
	return s.DoTxn(ctx, func(ctx context.Context) error {
		res, err := s.db.Exec(ctx, `DELETE FROM metasim_device WHERE network=$1 AND jid=$2`, s.network, device.String())
		if err != nil {
			return fmt.Errorf("failed to delete device: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if err := s.DeleteKeys(ctx, device); err != nil {
			return err
		}
		return s.DropQueue(ctx, device)
	})
}

// Devices lists a Meta user's devices in id order.
func (s *Store) Devices(ctx context.Context, user jid.JID) ([]Device, error) {
	rows, err := s.db.Query(ctx, `SELECT jid, created_at FROM metasim_device WHERE network=$1 AND user_jid=$2 ORDER BY device_id`,
		s.network, user.ToUser().String())
	if err != nil {
		return nil, fmt.Errorf("failed to list devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		var raw string
		var created int64
		if err := rows.Scan(&raw, &created); err != nil {
			return nil, fmt.Errorf("failed to list devices: %w", err)
		}
		j, err := parseJID(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, Device{JID: j, CreatedAt: fromMS(created)})
	}
	return out, rows.Err()
}

// DeviceExists reports whether a Meta device is in the directory.
func (s *Store) DeviceExists(ctx context.Context, device jid.JID) (bool, error) {
	ok, err := s.exists(ctx, `SELECT 1 FROM metasim_device WHERE network=$1 AND jid=$2`, s.network, device.String())
	if err != nil {
		return false, fmt.Errorf("failed to check device: %w", err)
	}
	return ok, nil
}

// UpsertAccount records a third-party account's accepted login.
func (s *Store) UpsertAccount(ctx context.Context, a Account) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO metasim_account (network, jid, integrator, read_receipts, first_seen, last_seen)
		VALUES ($1, $2, $3, $4, $5, $5)
		ON CONFLICT (network, jid) DO UPDATE SET read_receipts=excluded.read_receipts, last_seen=excluded.last_seen`,
		s.network, a.JID.String(), int64(a.Integrator), a.ReadReceipts, ms(a.LastSeen))
	if err != nil {
		return fmt.Errorf("failed to record account: %w", err)
	}
	return nil
}

const accountColumns = `jid, integrator, read_receipts, first_seen, last_seen`

func scanAccount(row interface{ Scan(...any) error }) (*Account, error) {
	var a Account
	var raw string
	var integrator, first, last int64
	if err := row.Scan(&raw, &integrator, &a.ReadReceipts, &first, &last); err != nil {
		return nil, err
	}
	j, err := parseJID(raw)
	if err != nil {
		return nil, err
	}
	a.JID, a.Integrator, a.FirstSeen, a.LastSeen = j, uint16(integrator), fromMS(first), fromMS(last)
	return &a, nil
}

// GetAccount returns a third-party account, or ErrNotFound.
func (s *Store) GetAccount(ctx context.Context, account jid.JID) (*Account, error) {
	a, err := scanAccount(s.db.QueryRow(ctx, `SELECT `+accountColumns+` FROM metasim_account WHERE network=$1 AND jid=$2`,
		s.network, account.ToUser().String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("failed to get account: %w", err)
	}
	return a, nil
}

// ListAccounts returns every third-party account.
func (s *Store) ListAccounts(ctx context.Context) ([]Account, error) {
	rows, err := s.db.Query(ctx, `SELECT `+accountColumns+` FROM metasim_account WHERE network=$1 ORDER BY first_seen, jid`, s.network)
	if err != nil {
		return nil, fmt.Errorf("failed to list accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("failed to list accounts: %w", err)
		}
		out = append(out, *a)
	}
	return out, rows.Err()
}

// KnownUser reports whether a user JID is a Meta user or a third-party account.
func (s *Store) KnownUser(ctx context.Context, user jid.JID) (bool, error) {
	user = user.ToUser()
	if user.IsInterop() {
		_, err := s.GetAccount(ctx, user)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	ok, err := s.exists(ctx, `SELECT 1 FROM metasim_user WHERE network=$1 AND jid=$2`, s.network, user.String())
	if err != nil {
		return false, fmt.Errorf("failed to check user: %w", err)
	}
	return ok, nil
}
