package media

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// VersionTable is the dbutil version table of this package's schema.
const VersionTable = "metasim_media_version"

//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// tokenStore keeps media_conn tokens by their hash: in memory always, and in the
// database too when there is one, so that tokens handed out before a restart stay
// valid for their TTL.
type tokenStore struct {
	db *dbutil.Database // nil: memory only

	mu         sync.Mutex
	mem        map[string]tokenEntry // token hash → entry
	lastPruned time.Time
}

type tokenEntry struct {
	account   jid.JID
	expiresAt time.Time
}

func newTokenStore(db *dbutil.Database, log zerolog.Logger) *tokenStore {
	ts := &tokenStore{mem: make(map[string]tokenEntry)}
	if db != nil {
		table := dbutil.BuildUpgradeTable().WithFSPath(upgradeFiles, "upgrades").Finish()
		ts.db = db.Child(VersionTable, table, dbutil.ZeroLogger(log.With().Str("db_section", "metasim_media").Logger()))
	}
	return ts
}

func (ts *tokenStore) upgrade(ctx context.Context) error {
	if ts.db == nil {
		return nil
	}
	if err := ts.db.Upgrade(ctx); err != nil {
		return fmt.Errorf("failed to upgrade metasim media tables: %w", err)
	}
	return nil
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// issue makes a new token for account, valid until now+ttl.
func (ts *tokenStore) issue(ctx context.Context, account jid.JID, now time.Time, ttl time.Duration) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("failed to make token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	entry := tokenEntry{account: account, expiresAt: now.Add(ttl)}
	h := hashToken(token)
	if ts.db != nil {
		if _, err := ts.db.Exec(ctx, `INSERT INTO metasim_media_token (token_hash, account, expires_at) VALUES ($1, $2, $3)`,
			h, account.String(), entry.expiresAt.UnixMilli()); err != nil {
			return "", fmt.Errorf("failed to store token: %w", err)
		}
	}
	ts.mu.Lock()
	ts.mem[h] = entry
	prune := now.Sub(ts.lastPruned) >= ttl
	if prune {
		ts.lastPruned = now
	}
	ts.mu.Unlock()
	if prune {
		ts.prune(ctx, now)
	}
	return token, nil
}

// valid reports whether token was issued and has not expired at now.
func (ts *tokenStore) valid(ctx context.Context, token string, now time.Time) (bool, error) {
	if token == "" {
		return false, nil
	}
	h := hashToken(token)
	ts.mu.Lock()
	entry, ok := ts.mem[h]
	ts.mu.Unlock()
	if !ok && ts.db != nil {
		var account string
		var expires int64
		err := ts.db.QueryRow(ctx, `SELECT account, expires_at FROM metasim_media_token WHERE token_hash=$1`, h).
			Scan(&account, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("failed to look up token: %w", err)
		}
		j, err := jid.Parse(account)
		if err != nil {
			return false, fmt.Errorf("corrupt token account: %w", err)
		}
		entry, ok = tokenEntry{account: j, expiresAt: time.UnixMilli(expires)}, true
		ts.mu.Lock()
		ts.mem[h] = entry
		ts.mu.Unlock()
	}
	return ok && now.Before(entry.expiresAt), nil
}

// prune forgets expired tokens.
func (ts *tokenStore) prune(ctx context.Context, now time.Time) {
	ts.mu.Lock()
	for h, e := range ts.mem {
		if !now.Before(e.expiresAt) {
			delete(ts.mem, h)
		}
	}
	ts.mu.Unlock()
	if ts.db != nil {
		if _, err := ts.db.Exec(ctx, `DELETE FROM metasim_media_token WHERE expires_at <= $1`, now.UnixMilli()); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to prune expired media tokens")
		}
	}
}
