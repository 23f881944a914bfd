package interop

import (
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// NotificationInfo is the typed content of a notification this package knows:
// *PreKeysLow, *IdentityChanged, *DevicesChanged, *AccountRestricted or *GroupChange.
type NotificationInfo interface{ isNotificationInfo() }

// PreKeysLow: the gateway holds only Count one-time prekeys of this account; upload
// more (PROTOCOL.md section 5: when fewer than 10 remain).
type PreKeysLow struct {
	Count int
}

// IdentityChanged: the user's identity key changed. Drop the sessions with the user,
// record the new identity and tell the Matrix user that the safety number changed.
type IdentityChanged struct {
	User jid.JID
}

// DevicesChanged: devices of User were added or removed.
type DevicesChanged struct {
	User    jid.JID
	Added   []jid.JID
	Removed []jid.JID
}

// AccountRestricted: after spam reports this account may not send until Until (zero
// when the gateway gave no end).
type AccountRestricted struct {
	Reason string
	Until  time.Time
}

func (*PreKeysLow) isNotificationInfo()        {}
func (*IdentityChanged) isNotificationInfo()   {}
func (*DevicesChanged) isNotificationInfo()    {}
func (*AccountRestricted) isNotificationInfo() {}

var (
	_ NotificationInfo = (*PreKeysLow)(nil)
	_ NotificationInfo = (*IdentityChanged)(nil)
	_ NotificationInfo = (*DevicesChanged)(nil)
	_ NotificationInfo = (*AccountRestricted)(nil)
	_ NotificationInfo = (*GroupChange)(nil)
)

// ParseNotification reads the notifications of PROTOCOL.md sections 5, 6 and 8.
// Others (future kinds) give (nil, nil) and pass through as nodes. A known kind with a
// malformed body gives an error.
func ParseNotification(n stanza.Node) (NotificationInfo, error) {
	if n.Tag != "notification" {
		return nil, fmt.Errorf("<%s> is not a notification", n.Tag)
	}
	switch n.Attr("type") {
	case "encrypt":
		return parseEncryptNotification(n)
	case "devices":
		return parseDevicesNotification(n)
	case "account_sync":
		return parseAccountSync(n)
	case "w:gp2":
		return parseGroupNotification(n)
	}
	return nil, nil
}

func parseEncryptNotification(n stanza.Node) (NotificationInfo, error) {
	if count, ok := n.Child("count"); ok {
		v, err := count.AttrInt("value")
		if err != nil || v < 0 || v > 1<<24 {
			return nil, fmt.Errorf("malformed prekey count notification: bad value %q", count.Attr("value"))
		}
		return &PreKeysLow{Count: int(v)}, nil
	}
	if _, ok := n.Child("identity"); ok {
		from, err := jid.Parse(n.Attr("from"))
		if err != nil || from.User == "" {
			return nil, fmt.Errorf("malformed identity notification: bad from: %w", err)
		}
		return &IdentityChanged{User: from.ToUser()}, nil
	}
	return nil, nil
}

func parseDevicesNotification(n stanza.Node) (NotificationInfo, error) {
	from, err := jid.Parse(n.Attr("from"))
	if err != nil || from.User == "" {
		return nil, fmt.Errorf("malformed devices notification: bad from: %w", err)
	}
	dc := &DevicesChanged{User: from.ToUser()}
	for _, part := range []struct {
		tag string
		out *[]jid.JID
	}{{"add", &dc.Added}, {"remove", &dc.Removed}} {
		for _, group := range n.ChildrenByTag(part.tag) {
			for _, dev := range group.ChildrenByTag("device") {
				d, err := jid.Parse(dev.Attr("jid"))
				if err != nil {
					return nil, fmt.Errorf("malformed devices notification: %w", err)
				}
				if d.ToUser() != dc.User {
					return nil, fmt.Errorf("malformed devices notification: device %s is not of %s", d, dc.User)
				}
				*part.out = append(*part.out, d)
			}
		}
	}
	if len(dc.Added) == 0 && len(dc.Removed) == 0 {
		return nil, fmt.Errorf("malformed devices notification: no <add> or <remove> device")
	}
	return dc, nil
}

func parseAccountSync(n stanza.Node) (NotificationInfo, error) {
	r, ok := n.Child("restriction")
	if !ok {
		return nil, nil
	}
	ar := &AccountRestricted{Reason: r.Attr("reason")}
	if r.HasAttr("until") {
		until, err := r.AttrInt("until")
		if err != nil || until < 0 {
			return nil, fmt.Errorf("malformed restriction notification: bad until %q", r.Attr("until"))
		}
		ar.Until = time.Unix(until, 0)
	}
	return ar, nil
}
