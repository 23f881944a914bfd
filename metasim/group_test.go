package metasim_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

const (
	groupTestUsers   = 64
	groupTestDevices = 2
	groupTestWait    = 2 * time.Minute
)

// TestGroupMessageReachesEveryDevice sends one message from a third-party account to
// a group of 64 simulated users with 2 devices each, on the simulator as metasim.New
// makes it from the default config (the SQLite file in the data dir, and the
// in-memory database of the tests), and checks that every one of the 128 devices
// decrypted it and stored it in its inbox, and acked it at the gateway. The devices
// keep their Signal state in the simulator's database and all decrypt at once:
// before the database had one writer, some waited past SQLite's busy timeout, did
// not ack, and never got the message.
func TestGroupMessageReachesEveryDevice(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(t *testing.T, cfg *metasim.Config)
	}{
		{"sqlite-file", func(t *testing.T, cfg *metasim.Config) { cfg.DataDir, cfg.Database = t.TempDir(), "" }},
		{"memory", func(*testing.T, *metasim.Config) {}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := simtest.NewProvider(t)
			cfg := simtest.Config(p)
			c.cfg(t, &cfg)
			cfg.Network("whatsapp").Limits.MaxGroupSize = groupTestUsers + 1 // and the sender
			env := simtest.StartWith(t, p, cfg)
			testGroupFanOut(t, env)
		})
	}
}

func testGroupFanOut(t *testing.T, env *simtest.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*groupTestWait)
	defer cancel()
	users := env.Sim.Users("whatsapp")
	members, devices := createGroupTestUsers(ctx, t, users)

	const number = "491709999999"
	acc, err := memstore.NewAccount(jid.Interop(simtest.IntegratorID, number))
	if err != nil {
		t.Fatal(err)
	}
	tp := env.StartThirdParty(t, simtest.ThirdPartyOptions{Number: number, Store: memstore.New(acc)})
	info, refused, err := tp.Acc.Client().CreateGroup(ctx, "Fan-out", members)
	if err != nil {
		t.Fatalf("creating the group: %v", err)
	}
	if len(refused) > 0 || len(info.Participants) != len(members)+1 {
		t.Fatalf("group of %d participants, %d refused, want %d and none", len(info.Participants), len(refused), len(members)+1)
	}

	const text = "Everyone gets this one"
	res, err := tp.Acc.SendGroupMessage(ctx, info.JID, members, "", &waE2E.Message{Conversation: proto.String(text)}, interop.SendOptions{})
	if err != nil {
		t.Fatalf("group send: %v", err)
	}
	if len(res.Devices) != len(devices) || res.Distributions != len(devices) {
		t.Fatalf("sent to %d devices with %d distributions, want %d of each", len(res.Devices), res.Distributions, len(devices))
	}

	// Every device has the text in its inbox, read from the sender key.
	waitCtx, stop := context.WithTimeout(ctx, groupTestWait)
	defer stop()
	var wg sync.WaitGroup
	missing := make(chan jid.JID, len(devices))
	for _, d := range devices {
		wg.Go(func() {
			_, err := users.WaitFor(waitCtx, d.ToUser(), simuser.Filter{Device: d, Chat: info.JID, Kinds: []simuser.Kind{simuser.KindText}},
				func(it simuser.Item) bool {
					return it.ID == res.ID && it.Data.Text == text && it.Data.EncType == "skmsg"
				})
			if err != nil {
				missing <- d
			}
		})
	}
	wg.Wait()
	close(missing)
	var lost []jid.JID
	for d := range missing {
		lost = append(lost, d)
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d devices did not receive the group message within %s (first: %s)", len(lost), len(devices), groupTestWait, lost[0])
	}

	// And acked it: nothing is left for a later connection.
	gw := env.Sim.Gateway("whatsapp")
	deadline := time.Now().Add(waitLong)
	for _, d := range devices {
		for {
			n, err := gw.QueueDepth(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still has %d stanzas queued at the gateway", d, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// createGroupTestUsers makes the simulated users, opted in to the test provider, a
// few at a time.
func createGroupTestUsers(ctx context.Context, t *testing.T, users *simuser.Manager) (members, devices []jid.JID) {
	t.Helper()
	members, devices, err := simtest.CreateUsers(ctx, users, groupTestUsers, groupTestDevices)
	if err != nil {
		t.Fatal(err)
	}
	return members, devices
}
