package gateway

import (
	"context"
	"strconv"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// maxUsyncUsers bounds one usync query.
const maxUsyncUsers = 1000

// handleUsync answers device list and contact queries (section 5).
func (s *session) handleUsync(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	usync, ok := n.Child("usync")
	if !ok || n.Attr("type") != "get" {
		return nil, badRequest("expected <usync> in a get iq")
	}
	query, okq := usync.Child("query")
	list, okl := usync.Child("list")
	if !okq || !okl {
		return nil, badRequest("<usync> needs <query> and <list>")
	}
	_, wantDevices := query.Child("devices")
	_, wantContact := query.Child("contact")
	if !wantDevices && !wantContact {
		return nil, badRequest("<query> asks for nothing this gateway answers")
	}
	users := list.ChildrenByTag("user")
	if len(users) == 0 || len(users) > maxUsyncUsers {
		return nil, badRequest("<list> must hold 1-1000 users")
	}
	out := make([]stanza.Node, 0, len(users))
	for _, u := range users {
		var res stanza.Node
		var ierr *iqError
		if wantContact {
			res, ierr = s.lookupContact(ctx, u)
		} else {
			res, ierr = s.listDevices(ctx, u)
		}
		if ierr != nil {
			return nil, ierr
		}
		if wantContact && wantDevices && res.HasAttr("jid") {
			devs, ierr := s.listDevices(ctx, res)
			if ierr != nil {
				return nil, ierr
			}
			res.Content = append(res.Children(), devs.Children()...)
		}
		out = append(out, res)
	}
	return []stanza.Node{{Tag: "usync", Attrs: stanza.Attrs{"mode": usync.Attr("mode"), "context": usync.Attr("context")},
		Content: []stanza.Node{{Tag: "list", Content: out}}}}, nil
}

// listDevices answers <user jid/> with the user's device list: the devices that
// uploaded keys. Unknown users and users this endpoint may not reach get the same
// 404 (no enumeration of who opted in).
func (s *session) listDevices(ctx context.Context, u stanza.Node) (stanza.Node, *iqError) {
	user, err := jid.Parse(u.Attr("jid"))
	if err != nil || user.User == "" || user.IsGroup() {
		return stanza.Node{}, badRequest("<user jid> is not a user")
	}
	user = user.ToUser()
	out := stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": user.String()}}
	notFound := []stanza.Node{{Tag: "devices", Content: []stanza.Node{{Tag: "error", Attrs: stanza.Attrs{"code": "404", "text": "not found"}}}}}
	if user != s.user() {
		known, err := s.g.st.KnownUser(ctx, user)
		if err != nil {
			return stanza.Node{}, s.logFailure(err, "look up user")
		}
		reachable := false
		if known {
			if reachable, err = s.g.reachable(ctx, s.user(), user); err != nil {
				return stanza.Node{}, s.logFailure(err, "check opt-in")
			}
		}
		if !reachable {
			out.Content = notFound
			return out, nil
		}
	}
	devs, err := s.g.st.KeyedDevices(ctx, user)
	if err != nil {
		return stanza.Node{}, s.logFailure(err, "list devices")
	}
	list := make([]stanza.Node, 0, len(devs))
	for _, d := range devs {
		list = append(list, stanza.Node{Tag: "device", Attrs: stanza.Attrs{"id": strconv.Itoa(int(d.Device))}})
	}
	out.Content = []stanza.Node{{Tag: "devices", Content: []stanza.Node{{Tag: "device-list", Content: list}}}}
	return out, nil
}

// lookupContact answers <user><contact>+number</contact></user>: "in" with the JID
// when the number is a Meta user reachable from this endpoint (for a third-party
// account: opted in to its integrator), else "out" without saying why.
func (s *session) lookupContact(ctx context.Context, u stanza.Node) (stanza.Node, *iqError) {
	c, ok := u.Child("contact")
	if !ok {
		return stanza.Node{}, badRequest("<user> without <contact>")
	}
	number := c.Text()
	out := stanza.Node{Tag: "user", Content: []stanza.Node{{Tag: "contact", Attrs: stanza.Attrs{"type": "out"}, Content: number}}}
	if !IsE164(number) {
		return out, nil
	}
	digits := number
	if digits[0] == '+' {
		digits = digits[1:]
	}
	found, err := s.g.st.FindUserByPhone(ctx, digits)
	if isNotFound(err) {
		return out, nil
	} else if err != nil {
		return stanza.Node{}, s.logFailure(err, "look up number")
	}
	ok, err = s.g.reachable(ctx, s.user(), found.JID)
	if err != nil {
		return stanza.Node{}, s.logFailure(err, "check opt-in")
	}
	if ok && found.JID != s.user() {
		out.Attrs = stanza.Attrs{"jid": found.JID.String()}
		out.Content = []stanza.Node{{Tag: "contact", Attrs: stanza.Attrs{"type": "in"}, Content: number}}
	}
	return out, nil
}
