package simuser

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
)

// Stores keeps the Signal state of the simulated devices.
type Stores interface {
	// Open returns the device's store; created says its identity was made just now
	// (a new device, or state that did not survive a restart).
	Open(ctx context.Context, device jid.JID) (st store.Store, created bool, err error)
	// Reset replaces the device's identity (and drops all its Signal state) and
	// returns the new store.
	Reset(ctx context.Context, device jid.JID) (store.Store, error)
	// Delete forgets the device's Signal state.
	Delete(ctx context.Context, device jid.JID) error
}

// SQLStores keeps the devices' Signal state in the simulator's database, so a restart
// keeps sessions. New upgrades the container's tables.
func SQLStores(c *sqlstore.Container) Stores { return &sqlStores{c: c} }

type sqlStores struct{ c *sqlstore.Container }

func (s *sqlStores) upgrade(ctx context.Context) error { return s.c.Upgrade(ctx) }

func (s *sqlStores) Open(ctx context.Context, device jid.JID) (store.Store, bool, error) {
	acc, err := s.c.GetAccount(ctx, device)
	if err == nil {
		return s.c.StoreFor(acc), false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	acc, err = s.c.CreateAccount(ctx, device)
	if err != nil {
		return nil, false, fmt.Errorf("failed to create Signal identity: %w", err)
	}
	return s.c.StoreFor(acc), true, nil
}

func (s *sqlStores) Reset(ctx context.Context, device jid.JID) (store.Store, error) {
	if err := s.c.DeleteAccount(ctx, device); err != nil {
		return nil, fmt.Errorf("failed to delete Signal identity: %w", err)
	}
	acc, err := s.c.CreateAccount(ctx, device)
	if err != nil {
		return nil, fmt.Errorf("failed to create Signal identity: %w", err)
	}
	return s.c.StoreFor(acc), nil
}

func (s *sqlStores) Delete(ctx context.Context, device jid.JID) error {
	return s.c.DeleteAccount(ctx, device)
}

// MemoryStores keeps the devices' Signal state in memory (the simulator's in-memory
// mode): a restart gives every device a new identity.
func MemoryStores() Stores { return &memStores{stores: make(map[jid.JID]store.Store)} }

type memStores struct {
	mu     sync.Mutex
	stores map[jid.JID]store.Store
}

func (m *memStores) Open(_ context.Context, device jid.JID) (store.Store, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.stores[device]; st != nil {
		return st, false, nil
	}
	st, err := newMemStore(device)
	if err != nil {
		return nil, false, err
	}
	m.stores[device] = st
	return st, true, nil
}

func (m *memStores) Reset(_ context.Context, device jid.JID) (store.Store, error) {
	st, err := newMemStore(device)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.stores[device] = st
	m.mu.Unlock()
	return st, nil
}

func (m *memStores) Delete(_ context.Context, device jid.JID) error {
	m.mu.Lock()
	delete(m.stores, device)
	m.mu.Unlock()
	return nil
}

func newMemStore(device jid.JID) (store.Store, error) {
	acc, err := memstore.NewAccount(device)
	if err != nil {
		return nil, fmt.Errorf("failed to create Signal identity: %w", err)
	}
	return memstore.New(acc), nil
}
