package interop

import (
	"context"
	"fmt"
	"strconv"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// ContactInfo says whether a phone number is reachable from this integrator
// (PROTOCOL.md section 5). Out does not tell unregistered from not opted in.
type ContactInfo struct {
	Number string  // as asked, normalised to "+" and digits
	In     bool    // reachable
	JID    jid.JID // the user's JID; set only when In
}

// GetDevices lists the device ids of users (the map is keyed by user JID, device 0).
// Users the gateway reported no devices or an error for are absent from the map.
func (c *Client) GetDevices(ctx context.Context, users []jid.JID) (map[jid.JID][]uint16, error) {
	iq, err := buildDevicesQuery(users)
	if err != nil {
		return nil, err
	}
	answer, err := c.SendIQ(ctx, iq)
	if err != nil {
		return nil, fmt.Errorf("failed to get device lists: %w", err)
	}
	return parseDevicesAnswer(answer, users)
}

// LookupContacts asks which phone numbers are reachable; the result is in the order
// of numbers. Numbers are E.164 digits with or without the leading "+".
func (c *Client) LookupContacts(ctx context.Context, numbers []string) ([]ContactInfo, error) {
	iq, normalised, err := buildContactQuery(numbers)
	if err != nil {
		return nil, err
	}
	answer, err := c.SendIQ(ctx, iq)
	if err != nil {
		return nil, fmt.Errorf("failed to look up contacts: %w", err)
	}
	return parseContactAnswer(answer, normalised)
}

func usyncIQ(context string, query stanza.Node, users []stanza.Node) stanza.Node {
	return stanza.Node{
		Tag:   "iq",
		Attrs: stanza.Attrs{"type": "get", "xmlns": "usync", "to": jid.ServerGateway},
		Content: []stanza.Node{{
			Tag:   "usync",
			Attrs: stanza.Attrs{"mode": "query", "context": context},
			Content: []stanza.Node{
				{Tag: "query", Content: []stanza.Node{query}},
				{Tag: "list", Content: users},
			},
		}},
	}
}

func buildDevicesQuery(users []jid.JID) (stanza.Node, error) {
	if len(users) == 0 {
		return stanza.Node{}, fmt.Errorf("no users to list devices of")
	}
	list := make([]stanza.Node, 0, len(users))
	for _, u := range users {
		if u.User == "" || u.IsGroup() {
			return stanza.Node{}, fmt.Errorf("cannot list devices of %q: not a user", u)
		}
		list = append(list, stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": u.ToUser().String()}})
	}
	return usyncIQ("message", stanza.Node{Tag: "devices", Attrs: stanza.Attrs{"version": "2"}}, list), nil
}

func usyncUsers(answer stanza.Node) ([]stanza.Node, error) {
	list, ok := answer.Path("usync", "list")
	if !ok {
		return nil, fmt.Errorf("usync answer has no <usync><list>")
	}
	return list.ChildrenByTag("user"), nil
}

func parseDevicesAnswer(answer stanza.Node, asked []jid.JID) (map[jid.JID][]uint16, error) {
	users, err := usyncUsers(answer)
	if err != nil {
		return nil, err
	}
	wanted := make(map[jid.JID]bool, len(asked))
	for _, u := range asked {
		wanted[u.ToUser()] = true
	}
	out := make(map[jid.JID][]uint16, len(users))
	for _, user := range users {
		u, err := jid.Parse(user.Attr("jid"))
		if err != nil {
			return nil, fmt.Errorf("malformed device list answer: %w", err)
		}
		if u.Device != 0 || !wanted[u] {
			return nil, fmt.Errorf("malformed device list answer: %s was not asked for", u)
		}
		if _, dup := out[u]; dup {
			return nil, fmt.Errorf("malformed device list answer: %s twice", u)
		}
		list, ok := user.Path("devices", "device-list")
		if !ok {
			continue // an error or no devices: the user is left out
		}
		var ids []uint16
		seen := map[uint16]bool{}
		for _, dev := range list.ChildrenByTag("device") {
			id, err := strconv.ParseUint(dev.Attr("id"), 10, 16)
			if err != nil {
				return nil, fmt.Errorf("malformed device list answer: %s has device id %q", u, dev.Attr("id"))
			}
			if !seen[uint16(id)] {
				seen[uint16(id)] = true
				ids = append(ids, uint16(id))
			}
		}
		if len(ids) > 0 {
			out[u] = ids
		}
	}
	return out, nil
}

// normaliseNumber turns "+49 170…"-free E.164 input into "+digits".
func normaliseNumber(s string) (string, bool) {
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if len(s) < 1 || len(s) > 15 || !isDigits(s) || s[0] == '0' {
		return "", false
	}
	return "+" + s, true
}

func buildContactQuery(numbers []string) (stanza.Node, []string, error) {
	if len(numbers) == 0 {
		return stanza.Node{}, nil, fmt.Errorf("no numbers to look up")
	}
	normalised := make([]string, 0, len(numbers))
	list := make([]stanza.Node, 0, len(numbers))
	for _, raw := range numbers {
		num, ok := normaliseNumber(raw)
		if !ok {
			return stanza.Node{}, nil, fmt.Errorf("%q is not an E.164 number", raw)
		}
		normalised = append(normalised, num)
		list = append(list, stanza.Node{Tag: "user", Content: []stanza.Node{{Tag: "contact", Content: num}}})
	}
	// WhatsApp asks contact questions in the "interactive" context.
	return usyncIQ("interactive", stanza.Node{Tag: "contact"}, list), normalised, nil
}

// parseContactAnswer matches answers to numbers by the number echoed in <contact>, or
// else by the JID's digits; an unmatched number counts as out.
func parseContactAnswer(answer stanza.Node, numbers []string) ([]ContactInfo, error) {
	users, err := usyncUsers(answer)
	if err != nil {
		return nil, err
	}
	found := make(map[string]ContactInfo, len(users))
	for _, user := range users {
		contact, ok := user.Child("contact")
		if !ok {
			return nil, fmt.Errorf("malformed contact answer: <user> without <contact>")
		}
		var info ContactInfo
		switch contact.Attr("type") {
		case "in":
			info.In = true
		case "out":
		default:
			return nil, fmt.Errorf("malformed contact answer: type %q", contact.Attr("type"))
		}
		var u jid.JID
		if user.HasAttr("jid") {
			if u, err = jid.Parse(user.Attr("jid")); err != nil {
				return nil, fmt.Errorf("malformed contact answer: %w", err)
			}
		}
		if info.In {
			if u.User == "" || u.IsGroup() {
				return nil, fmt.Errorf("malformed contact answer: reachable contact without a user JID")
			}
			info.JID = u.ToUser()
		}
		key, _ := normaliseNumber(contact.Text())
		if key == "" && u.User != "" {
			key, _ = normaliseNumber(u.Number())
		}
		if key == "" {
			continue
		}
		info.Number = key
		found[key] = info
	}
	out := make([]ContactInfo, len(numbers))
	for i, num := range numbers {
		info, ok := found[num]
		if !ok {
			info = ContactInfo{Number: num}
		}
		out[i] = info
	}
	return out, nil
}
