package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// UserOptions are a Meta user's settings.
type UserOptions struct {
	// ReadReceipts: the user shares read receipts (section 3.5: delivered only when
	// both sides enabled them).
	ReadReceipts bool
	// EEA marks the user as living in the EEA. WhatsApp users whose number has an EEA
	// calling code count as EEA anyway; Messenger ids have no calling code.
	EEA bool
	// Phone is the user's E.164 number (digits) for contact lookups; WhatsApp users
	// always have their JID's number.
	Phone string
	Name  string
}

// User is a Meta user as the directory holds it.
type User struct {
	JID     jid.JID
	Options UserOptions
	// Devices are all devices of the directory; KeyedDevices those that uploaded keys
	// (the device list handed out to others).
	Devices      []jid.JID
	KeyedDevices []jid.JID
	// OptIns are the integrators the user allowed (third-party chats on).
	OptIns     []uint16
	Restricted *Restriction
	CreatedAt  time.Time
}

// Restriction is a user's or account's sending ban.
type Restriction struct {
	Reason string
	Until  time.Time
}

// Account is a third-party account known to the gateway (it logged in once).
type Account struct {
	JID          jid.JID
	Integrator   uint16
	ReadReceipts bool
	HasKeys      bool
	Connected    bool
	Restricted   *Restriction
	FirstSeen    time.Time
	LastSeen     time.Time
}

func (g *Gateway) checkUserJID(user jid.JID) error {
	if user.Server != g.cfg.Server || user.User == "" {
		return fmt.Errorf("%w: %s", ErrWrongServer, user)
	}
	return nil
}

// CreateUser adds a Meta user with its device 0 (the phone). The device joins the
// user's device list once it uploaded keys.
func (g *Gateway) CreateUser(ctx context.Context, user jid.JID, opts UserOptions) error {
	user = user.ToUser()
	if err := g.checkUserJID(user); err != nil {
		return err
	}
	if g.cfg.Server == jid.ServerGateway {
		opts.Phone = user.User
	}
	if opts.Phone != "" && !IsE164(opts.Phone) {
		return fmt.Errorf("phone %q is not E.164 digits", opts.Phone)
	}
	err := g.st.CreateUser(ctx, gwstore.User{JID: user, Phone: opts.Phone, Name: opts.Name,
		ReadReceipts: opts.ReadReceipts, EEA: g.isEEA(user, opts), CreatedAt: g.now()})
	if errors.Is(err, gwstore.ErrExists) {
		return fmt.Errorf("%w: %s", ErrUserExists, user)
	}
	return err
}

// isEEA decides a Meta user's region: explicitly, or by a WhatsApp number.
func (g *Gateway) isEEA(user jid.JID, opts UserOptions) bool {
	return opts.EEA || (user.Server == jid.ServerGateway && IsEEANumber(user.User))
}

// SetUserOptions changes a Meta user's settings.
func (g *Gateway) SetUserOptions(ctx context.Context, user jid.JID, opts UserOptions) error {
	user = user.ToUser()
	if g.cfg.Server == jid.ServerGateway {
		opts.Phone = user.User
	}
	if opts.Phone != "" && !IsE164(opts.Phone) {
		return fmt.Errorf("phone %q is not E.164 digits", opts.Phone)
	}
	err := g.st.UpdateUser(ctx, gwstore.User{JID: user, Phone: opts.Phone, Name: opts.Name,
		ReadReceipts: opts.ReadReceipts, EEA: g.isEEA(user, opts)})
	if errors.Is(err, gwstore.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrUnknownUser, user)
	}
	return err
}

// User returns a Meta user.
func (g *Gateway) User(ctx context.Context, user jid.JID) (*User, error) {
	u, err := g.st.GetUser(ctx, user.ToUser())
	if errors.Is(err, gwstore.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownUser, user)
	} else if err != nil {
		return nil, err
	}
	return g.userView(ctx, u)
}

// Users returns every Meta user, oldest first.
func (g *Gateway) Users(ctx context.Context) ([]User, error) {
	users, err := g.st.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(users))
	for i := range users {
		u, err := g.userView(ctx, &users[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *u)
	}
	return out, nil
}

func (g *Gateway) userView(ctx context.Context, u *gwstore.User) (*User, error) {
	devs, err := g.st.Devices(ctx, u.JID)
	if err != nil {
		return nil, err
	}
	keyed, err := g.st.KeyedDevices(ctx, u.JID)
	if err != nil {
		return nil, err
	}
	restricted, err := g.restriction(ctx, u.JID)
	if err != nil {
		return nil, err
	}
	out := &User{JID: u.JID, OptIns: u.OptIns, KeyedDevices: keyed, Restricted: restricted, CreatedAt: u.CreatedAt,
		Options: UserOptions{ReadReceipts: u.ReadReceipts, EEA: u.EEA, Phone: u.Phone, Name: u.Name}}
	for _, d := range devs {
		out.Devices = append(out.Devices, d.JID)
	}
	return out, nil
}

// Accounts lists the third-party accounts that ever logged in.
func (g *Gateway) Accounts(ctx context.Context) ([]Account, error) {
	accs, err := g.st.ListAccounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Account, 0, len(accs))
	for _, a := range accs {
		hasKeys, err := g.st.HasKeys(ctx, a.JID)
		if err != nil {
			return nil, err
		}
		restricted, err := g.restriction(ctx, a.JID)
		if err != nil {
			return nil, err
		}
		out = append(out, Account{JID: a.JID, Integrator: a.Integrator, ReadReceipts: a.ReadReceipts, HasKeys: hasKeys,
			Connected: g.IsConnected(a.JID), Restricted: restricted, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen})
	}
	return out, nil
}

// AddDevice registers the user's next device (ids are never reused) and returns its
// JID; connect it with ConnectDevice. Its contacts are told (<notification
// type="devices"><add>) when it uploads its keys, the moment it joins the device list
// that phash is checked against.
func (g *Gateway) AddDevice(ctx context.Context, user jid.JID) (jid.JID, error) {
	dev, err := g.st.AddDevice(ctx, user.ToUser(), g.now())
	if errors.Is(err, gwstore.ErrNotFound) {
		return jid.JID{}, fmt.Errorf("%w: %s", ErrUnknownUser, user)
	}
	return dev, err
}

// RemoveDevice unlinks a companion device: its connection is closed, its keys and
// queue dropped, and its contacts told (<notification type="devices"><remove>).
func (g *Gateway) RemoveDevice(ctx context.Context, device jid.JID) error {
	if device.Device == 0 {
		return ErrPrimaryDevice
	}
	g.keyMu.Lock()
	hadKeys, err := g.st.HasKeys(ctx, device)
	if err == nil {
		err = g.st.RemoveDevice(ctx, device)
	}
	g.keyMu.Unlock()
	if errors.Is(err, gwstore.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrUnknownDevice, device)
	} else if err != nil {
		return err
	}
	if s := g.live(device); s != nil {
		s.streamError(stanza.Attrs{"code": "401"})
	}
	if hadKeys {
		g.announceDevices(ctx, device.ToUser(), "remove", device)
	}
	return nil
}

// SetOptIn turns third-party chats on for a user and allows (or disallows) one
// integrator (section 8). With RequireEEA only EEA users can allow one.
func (g *Gateway) SetOptIn(ctx context.Context, user jid.JID, integratorID uint16, allowed bool) error {
	u, err := g.st.GetUser(ctx, user.ToUser())
	if errors.Is(err, gwstore.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrUnknownUser, user)
	} else if err != nil {
		return err
	}
	if _, ok := g.integrators[integratorID]; !ok {
		return fmt.Errorf("integrator %d is not registered", integratorID)
	}
	if allowed && g.cfg.RequireEEA && !u.EEA {
		return fmt.Errorf("%w: %s", ErrNotEEA, user)
	}
	return g.st.SetOptIn(ctx, u.JID, integratorID, allowed)
}

// Block makes blocker block (or unblock) blocked, as the blocklist iq would.
func (g *Gateway) Block(ctx context.Context, blocker, blocked jid.JID, block bool) error {
	return g.st.SetBlocked(ctx, blocker, blocked, block)
}

// Restrict bans a user or account from sending until until and tells its endpoints
// (<notification type="account_sync"><restriction reason until/>).
func (g *Gateway) Restrict(ctx context.Context, user jid.JID, reason string, until time.Time) error {
	user = user.ToUser()
	if err := g.st.SetRestriction(ctx, user, gwstore.Restriction{Reason: reason, Until: until}); err != nil {
		return err
	}
	g.notifyRestriction(ctx, user, reason, until)
	return nil
}

// Unrestrict lifts a restriction.
func (g *Gateway) Unrestrict(ctx context.Context, user jid.JID) error {
	return g.st.ClearRestriction(ctx, user.ToUser())
}

// restriction returns the user's restriction if it is still running.
func (g *Gateway) restriction(ctx context.Context, user jid.JID) (*Restriction, error) {
	r, err := g.st.GetRestriction(ctx, user.ToUser())
	if err != nil || r == nil || !r.Until.After(g.now()) {
		return nil, err
	}
	return &Restriction{Reason: r.Reason, Until: r.Until}, nil
}

// endpointsOf lists where stanzas for a user go: every device of a Meta user, or the
// account of a third-party user.
func (g *Gateway) endpointsOf(ctx context.Context, user jid.JID) ([]jid.JID, error) {
	user = user.ToUser()
	if user.IsInterop() {
		if _, err := g.st.GetAccount(ctx, user); errors.Is(err, gwstore.ErrNotFound) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		return []jid.JID{user}, nil
	}
	devs, err := g.st.Devices(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]jid.JID, 0, len(devs))
	for _, d := range devs {
		out = append(out, d.JID)
	}
	return out, nil
}

// reachable reports whether a and b (users) may exchange stanzas: a Meta user and a
// third-party account only when the Meta user allowed that integrator (and is in
// the EEA when that is required, section 8). Two Meta users, or two third-party
// users in a group, always may.
func (g *Gateway) reachable(ctx context.Context, a, b jid.JID) (bool, error) {
	if a.IsInterop() == b.IsInterop() {
		return true, nil
	}
	meta, tp := a.ToUser(), b.ToUser()
	if meta.IsInterop() {
		meta, tp = tp, meta
	}
	integrator, ok := tp.IntegratorID()
	if !ok {
		return false, nil
	}
	if g.cfg.RequireEEA {
		u, err := g.st.GetUser(ctx, meta)
		if errors.Is(err, gwstore.ErrNotFound) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		if !u.EEA {
			return false, nil
		}
	}
	return g.st.IsOptedIn(ctx, meta, integrator)
}

// IsE164 reports whether s is E.164 digits (1-15, no leading zero), with an optional "+".
func IsE164(s string) bool {
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if len(s) < 1 || len(s) > 15 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Group is a group as the gateway holds it.
type Group struct {
	JID         jid.JID
	Creator     jid.JID
	Subject     string
	Description string
	CreatedAt   time.Time
	Members     []jid.JID
	Admins      []jid.JID // admins and the superadmin creator
}

// Group returns a group.
func (g *Gateway) Group(ctx context.Context, group jid.JID) (*Group, error) {
	gr, err := g.st.GetGroup(ctx, group)
	if errors.Is(err, gwstore.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownGroup, group)
	} else if err != nil {
		return nil, err
	}
	out := &Group{JID: gr.JID, Creator: gr.Creator, Subject: gr.Subject, Description: gr.Description, CreatedAt: gr.CreatedAt}
	for _, m := range gr.Members {
		out.Members = append(out.Members, m.User)
		if m.IsAdmin() {
			out.Admins = append(out.Admins, m.User)
		}
	}
	return out, nil
}

// Groups lists every group's JID, oldest first.
func (g *Gateway) Groups(ctx context.Context) ([]jid.JID, error) { return g.st.ListGroups(ctx) }
