package gwstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

var t0 = time.UnixMilli(1_700_000_000_000)

func open(t *testing.T, db *dbutil.Database, network string) *Store {
	t.Helper()
	s := New(db, network, zerolog.Nop())
	if err := s.Upgrade(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStore_Directory checks users, devices (ids never reused), opt-ins and accounts,
// and that two networks in one database do not see each other's rows.
func TestStore_Directory(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		wa, msgr := open(t, db, "whatsapp"), open(t, db, "messenger")
		// A second upgrade on the same database is a no-op.
		open(t, db, "whatsapp")
		alice := jid.MustParse("491701111111@s.whatsapp.net")
		must(t, wa.CreateUser(ctx, User{JID: alice, Phone: alice.User, ReadReceipts: true, EEA: true, CreatedAt: t0}))
		if err := wa.CreateUser(ctx, User{JID: alice, CreatedAt: t0}); !errors.Is(err, ErrExists) {
			t.Fatalf("second create: %v, want ErrExists", err)
		}
		if _, err := msgr.GetUser(ctx, alice); !errors.Is(err, ErrNotFound) {
			t.Fatalf("other network sees the user: %v", err)
		}
		d1, err := wa.AddDevice(ctx, alice, t0)
		must(t, err)
		d2, err := wa.AddDevice(ctx, alice, t0)
		must(t, err)
		if d1.Device != 1 || d2.Device != 2 {
			t.Fatalf("devices %s %s, want :1 and :2", d1, d2)
		}
		must(t, wa.RemoveDevice(ctx, d2))
		d3, err := wa.AddDevice(ctx, alice, t0)
		must(t, err)
		if d3.Device != 3 {
			t.Fatalf("device id reused: %s", d3)
		}
		devs, err := wa.Devices(ctx, alice)
		must(t, err)
		if len(devs) != 3 || devs[0].JID != alice || devs[2].JID != d3 {
			t.Fatalf("devices %v", devs)
		}
		must(t, wa.SetOptIn(ctx, alice, 7, true))
		must(t, wa.SetOptIn(ctx, alice, 7, true))
		must(t, wa.SetOptIn(ctx, alice, 3, true))
		must(t, wa.SetOptIn(ctx, alice, 3, false))
		u, err := wa.FindUserByPhone(ctx, "491701111111")
		must(t, err)
		if !slices.Equal(u.OptIns, []uint16{7}) || !u.ReadReceipts || !u.EEA {
			t.Fatalf("user %+v", u)
		}
		acc := jid.Interop(7, "491702222222")
		must(t, wa.UpsertAccount(ctx, Account{JID: acc, Integrator: 7, ReadReceipts: true, LastSeen: t0}))
		must(t, wa.UpsertAccount(ctx, Account{JID: acc, Integrator: 7, ReadReceipts: false, LastSeen: t0.Add(time.Hour)}))
		a, err := wa.GetAccount(ctx, acc)
		must(t, err)
		if a.ReadReceipts || !a.FirstSeen.Equal(t0) || !a.LastSeen.Equal(t0.Add(time.Hour)) {
			t.Fatalf("account %+v", a)
		}
		for _, tt := range []struct {
			user jid.JID
			want bool
		}{{alice, true}, {acc, true}, {jid.Interop(7, "1"), false}, {jid.MustParse("1@s.whatsapp.net"), false}} {
			got, err := wa.KnownUser(ctx, tt.user)
			must(t, err)
			if got != tt.want {
				t.Errorf("KnownUser(%s) = %v", tt.user, got)
			}
		}
	})
}

// TestStore_Keys checks uploads, pops (never the same prekey twice), identity changes
// and the keyed device list.
func TestStore_Keys(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		s := open(t, db, "whatsapp")
		alice := jid.MustParse("491701111111@s.whatsapp.net")
		must(t, s.CreateUser(ctx, User{JID: alice, CreatedAt: t0}))
		d1, err := s.AddDevice(ctx, alice, t0)
		must(t, err)
		keys := Keys{Registration: 42, Identity: [32]byte{1}, SignedPreKey: SignedPreKey{ID: 1, Pub: [32]byte{2}, Signature: [64]byte{3}}, UpdatedAt: t0}
		res, err := s.PutKeys(ctx, d1, keys, []PreKey{{ID: 5, Pub: [32]byte{5}}, {ID: 6, Pub: [32]byte{6}}})
		must(t, err)
		if !res.First || res.IdentityChanged || res.Count != 2 {
			t.Fatalf("first upload %+v", res)
		}
		devs, err := s.KeyedDevices(ctx, alice)
		must(t, err)
		if !slices.Equal(devs, []jid.JID{d1}) {
			t.Fatalf("keyed devices %v (device 0 has no keys)", devs)
		}
		pk, left, err := s.PopPreKey(ctx, d1)
		must(t, err)
		if pk == nil || pk.ID != 5 || left != 1 {
			t.Fatalf("pop %+v left %d", pk, left)
		}
		// Same identity: more keys are added, the consumed one never comes back.
		res, err = s.PutKeys(ctx, d1, keys, []PreKey{{ID: 7, Pub: [32]byte{7}}})
		must(t, err)
		if res.First || res.IdentityChanged || res.Count != 2 {
			t.Fatalf("second upload %+v", res)
		}
		keys.Identity = [32]byte{9}
		res, err = s.PutKeys(ctx, d1, keys, []PreKey{{ID: 8, Pub: [32]byte{8}}})
		must(t, err)
		if !res.IdentityChanged || res.Count != 1 {
			t.Fatalf("new identity %+v", res)
		}
		got, err := s.GetKeys(ctx, d1)
		must(t, err)
		if got.Identity != keys.Identity || got.Registration != 42 || got.SignedPreKey.Signature[0] != 3 {
			t.Fatalf("keys %+v", got)
		}
		must(t, s.SetSignedPreKey(ctx, d1, SignedPreKey{ID: 2, Pub: [32]byte{4}}, t0))
		if got, _ = s.GetKeys(ctx, d1); got.SignedPreKey.ID != 2 {
			t.Fatalf("rotation not stored: %+v", got.SignedPreKey)
		}
		pk, left, err = s.PopPreKey(ctx, d1)
		must(t, err)
		if pk == nil || pk.ID != 8 || left != 0 {
			t.Fatalf("pop %+v left %d", pk, left)
		}
		if pk, _, err = s.PopPreKey(ctx, d1); err != nil || pk != nil {
			t.Fatalf("pop from empty: %+v %v", pk, err)
		}
		must(t, s.RemoveDevice(ctx, d1))
		if _, err = s.GetKeys(ctx, d1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("keys survive device removal: %v", err)
		}
		acc := jid.Interop(1, "4917")
		_, err = s.PutKeys(ctx, acc, keys, nil)
		must(t, err)
		if devs, _ = s.KeyedDevices(ctx, acc); !slices.Equal(devs, []jid.JID{acc}) {
			t.Fatalf("account devices %v", devs)
		}
	})
}

// TestStore_Queue checks order, trimming to the maximum, acks, pruning and that seq
// never goes back after the newest row was acked.
func TestStore_Queue(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		s := open(t, db, "whatsapp")
		ep := jid.Interop(1, "4917")
		var seqs []int64
		for i, id := range []string{"a", "b", "c", "d"} {
			seq, err := s.Enqueue(ctx, ep, QueueItem{Class: "message", ID: id, From: "x@s.whatsapp.net", Frame: []byte(id),
				CreatedAt: t0.Add(time.Duration(i) * time.Hour)}, 3)
			must(t, err)
			seqs = append(seqs, seq)
		}
		items, err := s.QueueAfter(ctx, ep, 0, 10)
		must(t, err)
		if len(items) != 3 || items[0].ID != "b" || items[2].ID != "d" {
			t.Fatalf("queue %+v, want b c d", items)
		}
		ok, err := s.Ack(ctx, ep, AckFilter{Class: "message", ID: "d", From: "x@s.whatsapp.net"})
		must(t, err)
		if !ok {
			t.Fatal("ack removed nothing")
		}
		if ok, _ = s.Ack(ctx, ep, AckFilter{Class: "message", ID: "b", From: "other@s.whatsapp.net"}); ok {
			t.Fatal("ack from the wrong sender removed a stanza")
		}
		seq, err := s.Enqueue(ctx, ep, QueueItem{Class: "receipt", ID: "e", Frame: []byte("e"), CreatedAt: t0.Add(5 * time.Hour)}, 3)
		must(t, err)
		if seq <= seqs[3] {
			t.Fatalf("seq %d reused after %d", seq, seqs[3])
		}
		count, max, err := s.QueueStats(ctx, ep)
		must(t, err)
		if count != 3 || max != seq {
			t.Fatalf("stats %d %d", count, max)
		}
		if items, _ = s.QueueAfter(ctx, ep, seqs[1], 10); len(items) != 2 || items[0].ID != "c" {
			t.Fatalf("after %d: %+v", seqs[1], items)
		}
		// A delivered and a read receipt for one message differ only by type: each ack
		// removes its own.
		for _, typ := range []string{"", "read"} {
			_, err = s.Enqueue(ctx, ep, QueueItem{Class: "receipt", ID: "r", Type: typ, From: "x@s.whatsapp.net",
				Frame: []byte(typ), CreatedAt: t0.Add(6 * time.Hour)}, 0)
			must(t, err)
		}
		ok, err = s.Ack(ctx, ep, AckFilter{Class: "receipt", ID: "r", From: "x@s.whatsapp.net", Type: "read", HasType: true})
		must(t, err)
		rest, err := s.QueueAfter(ctx, ep, seq, 10)
		must(t, err)
		if !ok || len(rest) != 1 || rest[0].Type != "" {
			t.Fatalf("after acking the read receipt: %+v", rest)
		}
		if ok, _ = s.Ack(ctx, ep, AckFilter{Class: "receipt", ID: "r", From: "x@s.whatsapp.net"}); !ok {
			t.Fatal("untyped ack did not remove the delivery receipt")
		}
		pruned, err := s.PruneQueues(ctx, t0.Add(3*time.Hour))
		must(t, err)
		if pruned != 2 {
			t.Fatalf("pruned %d, want 2", pruned)
		}
		must(t, s.DropQueue(ctx, ep))
		if count, _, _ = s.QueueStats(ctx, ep); count != 0 {
			t.Fatalf("dropped queue holds %d", count)
		}
	})
}

// TestStore_GroupsAndSafety checks groups, blocks, reports, restrictions, contacts
// and conversation counting.
func TestStore_GroupsAndSafety(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		s := open(t, db, "whatsapp")
		a, b, c := jid.Interop(1, "4917"), jid.MustParse("4911@s.whatsapp.net"), jid.MustParse("4912@s.whatsapp.net")
		g := jid.MustParse("120363000000000001@g.us")
		must(t, s.CreateGroup(ctx, Group{JID: g, Creator: a, Subject: "s", SubjectOwner: a, SubjectTime: t0, CreatedAt: t0,
			Members: []Member{{a, RoleSuperAdmin}, {b, RoleMember}}}))
		must(t, s.AddMember(ctx, g, Member{User: c}, t0.Add(time.Second)))
		must(t, s.SetRole(ctx, g, b, RoleAdmin))
		must(t, s.SetSubject(ctx, g, "new", b, t0.Add(time.Minute)))
		must(t, s.SetDescription(ctx, g, "desc", "D1"))
		must(t, s.RemoveMember(ctx, g, c))
		got, err := s.GetGroup(ctx, g)
		must(t, err)
		if got.Subject != "new" || got.SubjectOwner != b || got.Description != "desc" || len(got.Members) != 2 {
			t.Fatalf("group %+v", got)
		}
		if m, ok := got.Member(b); !ok || !m.IsAdmin() {
			t.Fatalf("member b %+v %v", m, ok)
		}
		co, err := s.CoMembers(ctx, a)
		must(t, err)
		if !slices.Equal(co, []jid.JID{b}) {
			t.Fatalf("co-members %v", co)
		}

		must(t, s.SetBlocked(ctx, b, a, true))
		if ok, _ := s.IsBlocked(ctx, b, a); !ok {
			t.Fatal("not blocked")
		}
		if ok, _ := s.IsBlocked(ctx, a, b); ok {
			t.Fatal("blocking is not symmetric")
		}
		must(t, s.SetBlocked(ctx, b, a, false))
		if list, _ := s.Blocklist(ctx, b); len(list) != 0 {
			t.Fatalf("blocklist %v", list)
		}

		for i, reporter := range []jid.JID{b, b, c} {
			n, err := s.AddReport(ctx, a, reporter, "M"+string(rune('0'+i)), t0)
			must(t, err)
			if want := []int{1, 1, 2}[i]; n != want {
				t.Fatalf("report %d: %d reporters, want %d", i, n, want)
			}
		}
		must(t, s.ClearReports(ctx, a))
		if n, _ := s.AddReport(ctx, a, c, "M9", t0); n != 1 {
			t.Fatalf("reports not cleared: %d", n)
		}
		must(t, s.SetRestriction(ctx, a, Restriction{Reason: "spam", Until: t0.Add(time.Hour)}))
		r, err := s.GetRestriction(ctx, a)
		must(t, err)
		if r == nil || r.Reason != "spam" || !r.Until.Equal(t0.Add(time.Hour)) {
			t.Fatalf("restriction %+v", r)
		}
		must(t, s.ClearRestriction(ctx, a))
		if r, _ = s.GetRestriction(ctx, a); r != nil {
			t.Fatalf("restriction not lifted: %+v", r)
		}

		must(t, s.AddContact(ctx, b, a, t0))
		if ok, _ := s.HasWritten(ctx, b, a); !ok {
			t.Fatal("contact not recorded")
		}
		if ok, _ := s.HasWritten(ctx, a, b); ok {
			t.Fatal("contact is directed")
		}
		must(t, s.AddContact(ctx, a, c, t0))
		if cs, _ := s.Contacts(ctx, a); !slices.Equal(cs, []jid.JID{b, c}) {
			t.Fatalf("contacts %v", cs)
		}

		must(t, s.StartConversation(ctx, a, b, t0))
		must(t, s.StartConversation(ctx, a, c, t0.Add(time.Hour)))
		started, count, oldest, err := s.ConversationStats(ctx, a, b, t0.Add(-time.Minute))
		must(t, err)
		if !started || count != 2 || !oldest.Equal(t0) {
			t.Fatalf("stats %v %d %v", started, count, oldest)
		}
		started, count, _, err = s.ConversationStats(ctx, a, b, t0.Add(time.Minute))
		must(t, err)
		if started || count != 1 {
			t.Fatalf("stats after window %v %d", started, count)
		}
	})
}
