package interop

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// deviceCache holds each peer user's device list as the gateway last told it (usync).
// A devices notification or a 409 drops a user's entry; the next send asks again.
// Users without devices are not cached, so a send to them asks every time.
type deviceCache struct {
	mu    sync.Mutex
	users map[jid.JID][]jid.JID
	// gen counts invalidations, so a fetch that raced one does not store what it got.
	gen uint64
}

func newDeviceCache() *deviceCache { return &deviceCache{users: make(map[jid.JID][]jid.JID)} }

func (c *deviceCache) get(user jid.JID) ([]jid.JID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.users[user]
	return d, ok
}

func (c *deviceCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *deviceCache) fill(gen uint64, got map[jid.JID][]jid.JID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	for u, d := range got {
		c.users[u] = d
	}
}

func (c *deviceCache) invalidate(users ...jid.JID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, u := range users {
		delete(c.users, u.ToUser())
	}
}

// Devices returns the device JIDs of a peer user, from the cache or the gateway.
func (a *Account) Devices(ctx context.Context, user jid.JID) ([]jid.JID, error) {
	got, err := a.devicesOf(ctx, []jid.JID{user}, false)
	if err != nil {
		return nil, err
	}
	return got[user.ToUser()], nil
}

// InvalidateDevices forgets the cached device lists of users.
func (a *Account) InvalidateDevices(users ...jid.JID) { a.devices.invalidate(users...) }

// devicesOf returns the device lists of users (keyed by user JID), asking the gateway
// in one usync for those not cached (all of them when refresh is set). Users without
// devices are absent from the map.
func (a *Account) devicesOf(ctx context.Context, users []jid.JID, refresh bool) (map[jid.JID][]jid.JID, error) {
	out := make(map[jid.JID][]jid.JID, len(users))
	var ask []jid.JID
	for _, u := range users {
		u = u.ToUser()
		if _, seen := out[u]; seen || slices.Contains(ask, u) {
			continue
		}
		if d, ok := a.devices.get(u); ok && !refresh {
			out[u] = d
			continue
		}
		ask = append(ask, u)
	}
	if len(ask) == 0 {
		return out, nil
	}
	gen := a.devices.generation()
	ids, err := a.client.GetDevices(ctx, ask)
	if err != nil {
		return nil, fmt.Errorf("failed to get devices: %w", err)
	}
	fresh := make(map[jid.JID][]jid.JID, len(ids))
	for u, list := range ids {
		devs := make([]jid.JID, 0, len(list))
		for _, id := range list {
			devs = append(devs, u.WithDevice(id))
		}
		slices.SortFunc(devs, func(x, y jid.JID) int { return int(x.Device) - int(y.Device) })
		fresh[u] = devs
		out[u] = devs
	}
	a.devices.fill(gen, fresh)
	return out, nil
}
