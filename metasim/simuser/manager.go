package simuser

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
)

var (
	// ErrUnknownDevice: the JID is not a running device of this Manager.
	ErrUnknownDevice = errors.New("no such simulated device")
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("simulated users are closed")
	// ErrNoMediaHost: media was asked for without Config.Media.
	ErrNoMediaHost = errors.New("no media host configured")
	// ErrNotReady: a device did not connect (and upload its keys) in time.
	ErrNotReady = errors.New("device did not connect in time")
)

// Config sets up a Manager.
type Config struct {
	// Gateway is the network's gateway the devices connect to (required).
	Gateway *gateway.Gateway
	// Media is Meta's media hosts: where sent media is uploaded and where media from
	// other Meta users is fetched. Nil refuses media sends.
	Media *media.Host
	// Proxy fetches media third-party providers host; nil records such media as
	// failed.
	Proxy *media.Proxy
	// Stores keeps the devices' Signal state; nil means MemoryStores. With SQLStores,
	// use the container of DB itself, so that an inbox row commits in the same
	// transaction as the ratchet step that decrypted it.
	Stores Stores
	// DB holds the inbox and the users' settings (required).
	DB *dbutil.Database
	// MediaDir keeps every fetched plaintext as a file named by its SHA-256 (hex);
	// "" keeps none (the inbox still records hash and size).
	MediaDir string
	// Connection tunes the devices' connections (timeouts, backoff); Dial and Handler
	// are set by the Manager. Zero backoff fields reconnect fast (100 ms to 5 s): the
	// gateway is in-process.
	Connection interop.Config
	// SendAttempts bounds the sends of one message after 5xx and transport errors;
	// default 3.
	SendAttempts int
	// Now is the clock of timestamps; nil means time.Now.
	Now func() time.Time
	// Log is the base logger; each device logs with its JID.
	Log zerolog.Logger
}

// UserOptions set up a new simulated user.
type UserOptions struct {
	// Gateway are the directory settings (read receipts, EEA, phone, name).
	Gateway gateway.UserOptions
	// OptIn are the integrators the user allows (third-party chats turned on).
	OptIn []uint16
	// AutoRead makes device 0 send read receipts for whatever arrives.
	AutoRead bool
}

// DeviceStatus is one device's state.
type DeviceStatus struct {
	JID       jid.JID `json:"jid"`
	Connected bool    `json:"connected"`
	// Ready: connected at least once with its keys on the gateway.
	Ready bool `json:"ready"`
}

// Manager runs the simulated users of one gateway. Safe for concurrent use.
type Manager struct {
	cfg   Config
	gw    *gateway.Gateway
	inbox *inbox
	log   zerolog.Logger

	baseCtx context.Context
	stop    context.CancelFunc

	mu      sync.Mutex
	closed  bool
	devices map[jid.JID]*device
}

// New makes a Manager and creates or upgrades its tables (and the Signal store's,
// for SQLStores). Devices connect with CreateUser, AddDevice, or Start for those that
// already exist.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Gateway == nil || cfg.DB == nil {
		return nil, errors.New("simuser: Config.Gateway and Config.DB are required")
	}
	if cfg.Stores == nil {
		cfg.Stores = MemoryStores()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SendAttempts <= 0 {
		cfg.SendAttempts = 3
	}
	if cfg.Connection.Backoff.Initial == 0 {
		cfg.Connection.Backoff.Initial = 100 * time.Millisecond
	}
	if cfg.Connection.Backoff.Max == 0 {
		cfg.Connection.Backoff.Max = 5 * time.Second
	}
	if cfg.MediaDir != "" {
		if err := os.MkdirAll(cfg.MediaDir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create media directory: %w", err)
		}
	}
	if up, ok := cfg.Stores.(interface{ upgrade(context.Context) error }); ok {
		if err := up.upgrade(ctx); err != nil {
			return nil, fmt.Errorf("failed to upgrade Signal store: %w", err)
		}
	}
	m := &Manager{cfg: cfg, gw: cfg.Gateway, inbox: newInbox(cfg.DB, cfg.Now, cfg.Log), devices: make(map[jid.JID]*device),
		log: cfg.Log.With().Str("component", "simuser").Str("network", cfg.Gateway.Network()).Logger()}
	if err := m.inbox.upgrade(ctx); err != nil {
		return nil, err
	}
	m.baseCtx, m.stop = context.WithCancel(m.log.WithContext(context.Background()))
	return m, nil
}

// Start connects every device of every user in the gateway's directory that is not
// running yet (after a restart: with the sessions its store kept), and waits until
// they are ready or ctx ends.
func (m *Manager) Start(ctx context.Context) error {
	users, err := m.gw.Users(ctx)
	if err != nil {
		return fmt.Errorf("failed to list users: %w", err)
	}
	var started []*device
	for _, u := range users {
		for _, dev := range u.Devices {
			d, err := m.startDevice(ctx, dev)
			if err != nil {
				return err
			}
			started = append(started, d)
		}
	}
	for _, d := range started {
		if err := d.waitReady(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close disconnects every device and waits for them. The state stays in the
// database and the stores; the gateway is not closed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	devices := make([]*device, 0, len(m.devices))
	for _, d := range m.devices {
		devices = append(devices, d)
	}
	m.devices = map[jid.JID]*device{}
	m.mu.Unlock()
	m.stop()
	for _, d := range devices {
		d.halt()
	}
	return nil
}

// CreateUser adds a Meta user to the gateway with devices devices (device 0, the
// phone, and devices-1 companions), opts it in as asked, makes each device's Signal
// identity and connects it; it returns once every device uploaded its keys.
func (m *Manager) CreateUser(ctx context.Context, user jid.JID, devices int, opts UserOptions) ([]jid.JID, error) {
	user = user.ToUser()
	if devices <= 0 {
		devices = 1
	}
	if err := m.gw.CreateUser(ctx, user, opts.Gateway); err != nil {
		return nil, fmt.Errorf("failed to create user: %w", err)
	}
	for _, in := range opts.OptIn {
		if err := m.gw.SetOptIn(ctx, user, in, true); err != nil {
			return nil, fmt.Errorf("failed to opt in to integrator %d: %w", in, err)
		}
	}
	if err := m.inbox.setAutoRead(ctx, user, opts.AutoRead); err != nil {
		return nil, err
	}
	jids := []jid.JID{user}
	for i := 1; i < devices; i++ {
		d, err := m.gw.AddDevice(ctx, user)
		if err != nil {
			return nil, fmt.Errorf("failed to add device: %w", err)
		}
		jids = append(jids, d)
	}
	for _, j := range jids {
		d, err := m.startDevice(ctx, j)
		if err != nil {
			return nil, err
		}
		if err := d.waitReady(ctx); err != nil {
			return nil, err
		}
	}
	return jids, nil
}

// AddDevice links a new companion device to user and connects it; it returns once
// the device uploaded its keys (and so joined the device list others encrypt for).
func (m *Manager) AddDevice(ctx context.Context, user jid.JID) (jid.JID, error) {
	dev, err := m.gw.AddDevice(ctx, user.ToUser())
	if err != nil {
		return jid.JID{}, fmt.Errorf("failed to add device: %w", err)
	}
	d, err := m.startDevice(ctx, dev)
	if err != nil {
		return jid.JID{}, err
	}
	return dev, d.waitReady(ctx)
}

// RemoveDevice disconnects a companion device, unlinks it at the gateway (which tells
// its contacts) and forgets its Signal state.
func (m *Manager) RemoveDevice(ctx context.Context, dev jid.JID) error {
	if dev.Device == 0 {
		return gateway.ErrPrimaryDevice
	}
	m.stopDevice(dev)
	if err := m.gw.RemoveDevice(ctx, dev); err != nil {
		return fmt.Errorf("failed to remove device: %w", err)
	}
	if err := m.cfg.Stores.Delete(ctx, dev); err != nil {
		return fmt.Errorf("failed to delete Signal state: %w", err)
	}
	return nil
}

// ResetIdentity gives a device a new Signal identity, as a reinstall would: its
// sessions are dropped, it reconnects and uploads the new keys, and the gateway
// announces the identity change to its contacts (section 5).
func (m *Manager) ResetIdentity(ctx context.Context, dev jid.JID) error {
	if _, err := m.device(dev); err != nil {
		return err
	}
	m.stopDevice(dev)
	st, err := m.cfg.Stores.Reset(ctx, dev)
	if err != nil {
		return err
	}
	d, err := m.runDevice(dev, st, true)
	if err != nil {
		return err
	}
	return d.waitReady(ctx)
}

// SetAutoRead turns automatic read receipts on or off for a user.
func (m *Manager) SetAutoRead(ctx context.Context, user jid.JID, on bool) error {
	return m.inbox.setAutoRead(ctx, user, on)
}

// Devices lists the running devices of a user.
func (m *Manager) Devices(user jid.JID) []DeviceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []DeviceStatus
	for j, d := range m.devices {
		if j.ToUser() == user.ToUser() {
			out = append(out, d.status())
		}
	}
	slices.SortFunc(out, func(a, b DeviceStatus) int { return int(a.JID.Device) - int(b.JID.Device) })
	return out
}

// Account returns a device's interop.Account, for what this package does not wrap.
func (m *Manager) Account(dev jid.JID) (*interop.Account, error) {
	d, err := m.device(dev)
	if err != nil {
		return nil, err
	}
	return d.acc, nil
}

// Inbox returns what a user's devices received, oldest first.
func (m *Manager) Inbox(ctx context.Context, user jid.JID, f Filter) ([]Item, error) {
	return m.inbox.list(ctx, user, f)
}

// ClearInbox forgets everything a user received.
func (m *Manager) ClearInbox(ctx context.Context, user jid.JID) error {
	return m.inbox.clear(ctx, user)
}

// WaitFor blocks until an item of user matching f (and match, when not nil) is in
// the inbox, or ctx ends. A media item matches only once its fetch ended, so a
// waiter sees the verified result. f.Limit is the page size of the scans.
func (m *Manager) WaitFor(ctx context.Context, user jid.JID, f Filter, match func(Item) bool) (Item, error) {
	pageSize := f.Limit
	if pageSize <= 0 || pageSize > maxPage {
		pageSize = maxPage
	}
	for {
		changed := m.inbox.changes()
		// Scan everything after f.After; the next round starts at the first item whose
		// media was still pending, or after the last item seen.
		next, pendingFrom := f.After, int64(-1)
		for page := f; ; {
			items, err := m.inbox.list(ctx, user, page)
			if err != nil {
				return Item{}, err
			}
			for _, it := range items {
				if it.Data.Media != nil && it.Data.Media.Status == MediaPending {
					if pendingFrom < 0 {
						pendingFrom = it.Seq - 1
					}
					continue
				}
				if match == nil || match(it) {
					return it, nil
				}
			}
			if len(items) > 0 {
				next = items[len(items)-1].Seq
			}
			if len(items) < pageSize {
				break
			}
			page.After = next
		}
		f.After = next
		if pendingFrom >= 0 {
			f.After = pendingFrom
		}
		select {
		case <-ctx.Done():
			return Item{}, ctx.Err()
		case <-changed:
		}
	}
}

// Receipts sums up the receipts user got for one of its messages: for each type
// (delivered, read, played) the devices that sent one, in the order they came.
func (m *Manager) Receipts(ctx context.Context, user jid.JID, id string) (map[string][]jid.JID, error) {
	out := map[string][]jid.JID{}
	f := Filter{ID: id, Kinds: []Kind{KindReceipt}}
	for {
		items, err := m.inbox.list(ctx, user, f)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if !slices.Contains(out[it.Data.Receipt], it.Sender) {
				out[it.Data.Receipt] = append(out[it.Data.Receipt], it.Sender)
			}
		}
		if len(items) < maxPage {
			return out, nil
		}
		f.After = items[len(items)-1].Seq
	}
}

// device returns a running device; the user JID names device 0.
func (m *Manager) device(dev jid.JID) (*device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	d := m.devices[dev]
	if d == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownDevice, dev)
	}
	return d, nil
}

// startDevice opens a device's store and runs it, unless it runs already.
func (m *Manager) startDevice(ctx context.Context, dev jid.JID) (*device, error) {
	m.mu.Lock()
	d := m.devices[dev]
	m.mu.Unlock()
	if d != nil {
		return d, nil
	}
	st, created, err := m.cfg.Stores.Open(ctx, dev)
	if err != nil {
		return nil, fmt.Errorf("failed to open Signal store of %s: %w", dev, err)
	}
	return m.runDevice(dev, st, created)
}

// stopDevice halts a running device and forgets it.
func (m *Manager) stopDevice(dev jid.JID) {
	m.mu.Lock()
	d := m.devices[dev]
	delete(m.devices, dev)
	m.mu.Unlock()
	if d != nil {
		d.halt()
	}
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
