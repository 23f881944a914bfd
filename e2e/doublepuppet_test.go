//go:build synapse

package e2e

import (
	"testing"
	"time"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// With double puppeting set up the mautrix way (an as_token secret for the
// homeserver), the bridge acts as the Matrix user: it joins them to a new portal
// itself, marked as its own doing, where without it the user would only be invited.
func TestSynapseDoublePuppeting(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) { o.DoublePuppet = true })
	alice := e.user("dpalice")
	alice.SetAutoJoin(false)
	loginID, err := e.st.LoginBridge(e.ctx, alice, "whatsapp", "+491707770007")
	e.must(err)
	_, err = e.st.WaitLoginState(e.ctx, alice, loginID, "CONNECTED", 30*time.Second)
	e.must(err)
	_, err = e.st.Sim.NewUser(e.ctx, "+491708880008", nil)
	e.must(err)
	room, err := e.st.StartChat(e.ctx, alice, loginID, "+491708880008")
	e.must(err)
	join, err := alice.WaitEvent(e.ctx, 30*time.Second, "a join made for the user", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == alice.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	if src, _ := join.Content.Raw[appservice.DoublePuppetKey].(string); src == "" {
		t.Errorf("the join carries no %s: %s", appservice.DoublePuppetKey, join.Content.VeryRaw)
	}
}
