package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/util/keyhelper"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

// VersionTable is the dbutil version table of this package's schema, separate from
// the bridge's own so both can live in one database.
const VersionTable = "interop_store_version"

// ErrAccountExists is returned by CreateAccount when the JID already has an account.
var ErrAccountExists = errors.New("account already exists")

//go:embed upgrades/*.sql
var upgradeFiles embed.FS

// Container holds the Signal stores of every local account in one database.
type Container struct {
	db  *dbutil.Database
	ser *serialize.Serializer
	// preKeyInserter builds multi-row prekey INSERTs ($1 is the account).
	preKeyInserter *dbutil.MassInsertBuilder[preKeyRow, [1]any, [2]any]

	mu     sync.Mutex
	stores map[jid.JID]*signalStore
}

// New wraps db (which may be the bridge's own database) with this package's upgrade
// table and version table. Call Upgrade before use.
func New(db *dbutil.Database, log zerolog.Logger) *Container {
	table := dbutil.BuildUpgradeTable().WithFSPath(upgradeFiles, "upgrades").Finish()
	return &Container{
		db:     db.Child(VersionTable, table, dbutil.ZeroLogger(log.With().Str("db_section", "interop_store").Logger())),
		ser:    serialize.NewProtoBufSerializer(),
		stores: make(map[jid.JID]*signalStore),
		preKeyInserter: dbutil.NewMassInsertBuilder[preKeyRow, [1]any, [2]any](`
			INSERT INTO interop_prekey (account_jid, key_id, record) VALUES ($1, $2, $3)
			ON CONFLICT (account_jid, key_id) DO UPDATE SET record=excluded.record, uploaded=false`,
			"($1, $%d, $%d)"),
	}
}

// Upgrade creates or migrates the tables.
func (c *Container) Upgrade(ctx context.Context) error {
	if err := c.db.Upgrade(ctx); err != nil {
		return fmt.Errorf("failed to upgrade interop store: %w", err)
	}
	return nil
}

// CreateAccount makes a new identity key pair and registration id for a local account
// and stores them. It fails with ErrAccountExists if the JID already has one.
func (c *Container) CreateAccount(ctx context.Context, j jid.JID) (*store.Account, error) {
	keyPair, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		return nil, fmt.Errorf("failed to generate identity key: %w", err)
	}
	acc := &store.Account{
		JID:            j,
		RegistrationID: keyhelper.GenerateRegistrationID(),
		IdentityKey:    keyPair,
		// Stored in milliseconds, so keep what a later GetAccount will return.
		CreatedAt: time.UnixMilli(time.Now().UnixMilli()),
	}
	pub := keyPair.PublicKey().PublicKey().PublicKey()
	priv := keyPair.PrivateKey().Serialize()
	res, err := c.db.Exec(ctx, `
		INSERT INTO interop_account (jid, registration_id, identity_pub, identity_priv, created_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (jid) DO NOTHING`,
		j.String(), acc.RegistrationID, pub[:], priv[:], acc.CreatedAt.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("failed to insert account: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("failed to insert account: %w", err)
	} else if n == 0 {
		return nil, fmt.Errorf("%w: %s", ErrAccountExists, j)
	}
	return acc, nil
}

const accountColumns = `jid, registration_id, identity_pub, identity_priv, created_at`

// GetAccount returns a stored account, or store.ErrNotFound.
func (c *Container) GetAccount(ctx context.Context, j jid.JID) (*store.Account, error) {
	acc, err := scanAccount(c.db.QueryRow(ctx,
		`SELECT `+accountColumns+` FROM interop_account WHERE jid=$1`, j.String()))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("failed to get account %s: %w", j, err)
	} else if err != nil {
		return nil, fmt.Errorf("failed to get account: %w", err)
	}
	return acc, nil
}

// ListAccounts returns every stored account, ordered by JID.
func (c *Container) ListAccounts(ctx context.Context) ([]*store.Account, error) {
	rows, err := c.db.Query(ctx, `SELECT `+accountColumns+` FROM interop_account ORDER BY jid`)
	accs, err := dbutil.NewRowIterWithError(rows, scanAccount, err).AsList()
	if err != nil {
		return nil, fmt.Errorf("failed to list accounts: %w", err)
	}
	return accs, nil
}

func scanAccount(row dbutil.Scannable) (*store.Account, error) {
	var jidStr string
	var regID, createdAt int64
	var pub, priv []byte
	err := row.Scan(&jidStr, &regID, &pub, &priv, &createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	j, err := jid.Parse(jidStr)
	if err != nil {
		return nil, fmt.Errorf("corrupt account jid: %w", err)
	}
	if len(pub) != 32 || len(priv) != 32 {
		return nil, fmt.Errorf("corrupt identity key of %s", j)
	}
	return &store.Account{
		JID:            j,
		RegistrationID: uint32(regID),
		IdentityKey: identity.NewKeyPair(
			identity.NewKey(ecc.NewDjbECPublicKey([32]byte(pub))),
			ecc.NewDjbECPrivateKey([32]byte(priv)),
		),
		CreatedAt: time.UnixMilli(createdAt),
	}, nil
}

// DeleteAccount removes an account and, through the foreign keys, every key, session
// and message copy it owned. Deleting a missing account is not an error.
func (c *Container) DeleteAccount(ctx context.Context, j jid.JID) error {
	return c.DoTxn(ctx, func(ctx context.Context) error {
		c.mu.Lock()
		st := c.stores[j]
		c.mu.Unlock()
		if st != nil {
			st.claimAll(c.txnFrom(ctx))
		}
		if _, err := c.db.Exec(ctx, `DELETE FROM interop_account WHERE jid=$1`, j.String()); err != nil {
			return fmt.Errorf("failed to delete account: %w", err)
		}
		if st != nil {
			st.evictAll()
		}
		return nil
	})
}

// StoreFor returns the store of one account. Calls with the same account return the
// same store, so all users of an account share its caches.
func (c *Container) StoreFor(acc *store.Account) store.Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.stores[acc.JID]; st != nil && sameAccount(st.acc, acc) {
		return st
	}
	// A new account under a JID that had another one (deleted and recreated) gets a
	// new store: the old store's caches belong to the old identity.
	st := newSignalStore(c, acc)
	c.stores[acc.JID] = st
	return st
}

func sameAccount(a, b *store.Account) bool {
	return a.RegistrationID == b.RegistrationID &&
		a.IdentityKey.PublicKey().PublicKey().PublicKey() == b.IdentityKey.PublicKey().PublicKey().PublicKey()
}
