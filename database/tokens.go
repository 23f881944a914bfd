package database

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// TokenBytes is the size of a login token before encoding.
const TokenBytes = 32

// MintToken makes a new login token for the interop account jid on network, valid for
// ttl, and revokes the account's earlier tokens: one account has one login, and a new
// sign-in must shut out whoever held the old token. The plaintext token is returned
// only here; the database keeps its SHA-256.
//
// Intended use: mint a token right before each dial and put it in the ClientPayload,
// so the plaintext never needs to be stored anywhere. The gateway checks the token once
// per connection and asks for a reconnect when it expires, which mints the next one.
func (d *Database) MintToken(ctx context.Context, network, jid string, ttl time.Duration) (token string, expiresAt time.Time, err error) {
	if ttl <= 0 {
		return "", time.Time{}, fmt.Errorf("failed to mint token: ttl %s is not positive", ttl)
	}
	raw := make([]byte, TokenBytes)
	if _, err = rand.Read(raw); err != nil {
		return "", time.Time{}, fmt.Errorf("failed to generate token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(raw)
	now := d.Now()
	// Stored in milliseconds, so return what CheckToken will return.
	expiresAt = time.UnixMilli(now.Add(ttl).UnixMilli())
	err = d.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := d.db.Exec(ctx, `
			UPDATE interop_bridge_login_token SET revoked=true
			WHERE network=$1 AND account_jid=$2 AND revoked=false`, network, jid); err != nil {
			return err
		}
		_, err := d.db.Exec(ctx, `
			INSERT INTO interop_bridge_login_token (network, account_jid, token_hash, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5)`, network, jid, hashToken(token), now.UnixMilli(), expiresAt.UnixMilli())
		return err
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("failed to store token: %w", err)
	}
	return token, expiresAt, nil
}

// CheckToken says whether token is a live (not revoked, not expired) token of jid on
// network, and when it expires. An unknown account and a wrong token are both just
// invalid; err is only for database trouble.
func (d *Database) CheckToken(ctx context.Context, network, jid, token string) (valid bool, expiresAt time.Time, err error) {
	if token == "" {
		return false, time.Time{}, nil
	}
	// Looked up by hash: a timing difference reveals nothing about a stored token.
	var exp int64
	var revoked bool
	err = d.db.QueryRow(ctx, `
		SELECT expires_at, revoked FROM interop_bridge_login_token
		WHERE network=$1 AND account_jid=$2 AND token_hash=$3`, network, jid, hashToken(token)).Scan(&exp, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return false, time.Time{}, nil
	} else if err != nil {
		return false, time.Time{}, fmt.Errorf("failed to look up token: %w", err)
	}
	if revoked || exp <= d.nowMilli() {
		return false, time.Time{}, nil
	}
	return true, time.UnixMilli(exp), nil
}

// RevokeTokens revokes every token of jid on network (a logout); it returns how many
// live tokens it revoked.
func (d *Database) RevokeTokens(ctx context.Context, network, jid string) (int64, error) {
	res, err := d.db.Exec(ctx, `
		UPDATE interop_bridge_login_token SET revoked=true
		WHERE network=$1 AND account_jid=$2 AND revoked=false`, network, jid)
	if err != nil {
		return 0, fmt.Errorf("failed to revoke tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("failed to count revoked tokens: %w", err)
	}
	return n, nil
}

// PruneTokens deletes tokens that expired before cutoff and revoked tokens minted before
// cutoff: they can never be valid again.
func (d *Database) PruneTokens(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := d.db.Exec(ctx, `
		DELETE FROM interop_bridge_login_token
		WHERE expires_at < $1 OR (revoked=true AND created_at < $1)`, cutoff.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("failed to prune tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("failed to count pruned tokens: %w", err)
	}
	return n, nil
}

func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
