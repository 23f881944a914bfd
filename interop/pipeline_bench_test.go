package interop

import (
	"context"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// The message pipeline without the network, on each store: what one message costs
// the bridge between the Matrix event and the frame (outgoing), and between the frame
// and the Matrix event (incoming). Each SQL sub-benchmark reports x-memstore, its time
// per message over memstore's in the same run, and the incoming ones also
// pipeline-x-memstore: outgoing plus incoming over memstore's.

// benchStore opens one account's store on a backend.
type benchStore struct {
	name string
	open func(b *testing.B, j jid.JID) store.Store
}

func benchStores() []benchStore {
	mem := benchStore{name: "memstore", open: func(b *testing.B, j jid.JID) store.Store {
		acc, err := memstore.NewAccount(j)
		if err != nil {
			b.Fatal(err)
		}
		return memstore.New(acc)
	}}
	out := []benchStore{mem}
	for _, be := range sqltest.Backends() {
		out = append(out, benchStore{name: be.Name, open: func(b *testing.B, j jid.JID) store.Store {
			c := sqlstore.New(be.Open(b), zerolog.Nop())
			ctx := context.Background()
			if err := c.Upgrade(ctx); err != nil {
				b.Fatal(err)
			}
			acc, err := c.CreateAccount(ctx, j)
			if err != nil {
				b.Fatal(err)
			}
			return c.StoreFor(acc)
		}})
	}
	return out
}

// benchMessage is a typical short reply with a mention.
var benchMessage = &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
	Text: proto.String("@491701234567 sounds good, see you at *eight* at the usual place"),
	ContextInfo: &waE2E.ContextInfo{StanzaId: proto.String("3EB0C431C5E9F8B7A2D1"), Participant: proto.String(bobJID.String()),
		QuotedMessage: textMsg("dinner tonight?"), MentionedJid: []string{bobJID.String()}},
}}

// nsPerOp remembers each sub-benchmark's last time per op, for the ratios.
var nsPerOp sync.Map

func reportRatio(b *testing.B, bench, backend string) {
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	nsPerOp.Store(bench+"/"+backend, per)
	if backend == "memstore" {
		return
	}
	if base, ok := nsPerOp.Load(bench + "/memstore"); ok {
		b.ReportMetric(per/base.(float64), "x-memstore")
	}
	// The full pipeline (one message out plus one in), once both benchmarks ran.
	var sum [2]float64
	for i, be := range []string{backend, "memstore"} {
		for _, stage := range []string{"outgoing", "incoming"} {
			v, ok := nsPerOp.Load(stage + "/" + be)
			if !ok {
				return
			}
			sum[i] += v.(float64)
		}
	}
	if bench == "incoming" {
		b.ReportMetric(sum[0]/sum[1], "pipeline-x-memstore")
	}
}

// benchPair returns an Account on st and a memstore peer with a session established
// both ways (so the Account sends msg, not pkmsg).
func benchPair(b *testing.B, st store.Store) (*Account, *signal.Manager) {
	ctx := context.Background()
	a, err := NewAccount(AccountConfig{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	acc, err := memstore.NewAccount(bobJID)
	if err != nil {
		b.Fatal(err)
	}
	peer := signal.New(memstore.New(acc), zerolog.Nop())
	bundle, err := peer.OwnBundle(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err = a.mgr.ProcessBundle(ctx, bobJID, bundle); err != nil {
		b.Fatal(err)
	}
	nop := func(context.Context, []byte) error { return nil }
	part, err := a.mgr.Encrypt(ctx, bobJID, []byte("hi"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err = peer.Decrypt(ctx, a.own, part.Type, part.Ciphertext, nop); err != nil {
		b.Fatal(err)
	}
	part, err = peer.Encrypt(ctx, a.own, []byte("hi"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err = a.mgr.Decrypt(ctx, bobJID, part.Type, part.Ciphertext, nop); err != nil {
		b.Fatal(err)
	}
	a.devices.fill(a.devices.generation(), map[jid.JID][]jid.JID{bobJID: {bobJID}})
	return a, peer
}

// BenchmarkOutgoingMessage: protobuf marshal, pad, encrypt on an established session
// and keep the copy in one transaction, build and encode the stanza.
func BenchmarkOutgoingMessage(b *testing.B) {
	for _, bs := range benchStores() {
		b.Run(bs.name, func(b *testing.B) {
			a, _ := benchPair(b, bs.open(b, aliceJID))
			ctx := context.Background()
			var res SendResult
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				content, plaintext, err := encodeContent(benchMessage)
				if err != nil {
					b.Fatal(err)
				}
				node, err := a.prepareDirect(ctx, bobJID, NewID(), plaintext, content, false, &res)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := stanza.Marshal(node); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportRatio(b, "outgoing", bs.name)
		})
	}
}

// BenchmarkIncomingMessage: decode the stanza, decrypt in a transaction, unpad,
// unmarshal the protobuf and deliver (a no-op) inside the transaction.
func BenchmarkIncomingMessage(b *testing.B) {
	for _, bs := range benchStores() {
		b.Run(bs.name, func(b *testing.B) {
			a, peer := benchPair(b, bs.open(b, aliceJID))
			ctx := context.Background()
			plaintext, err := proto.Marshal(benchMessage)
			if err != nil {
				b.Fatal(err)
			}
			// The frames are made before timing: the sender's cost is not measured here.
			frames := make([][]byte, b.N)
			for i := range frames {
				part, err := peer.Encrypt(ctx, a.own, plaintext)
				if err != nil {
					b.Fatal(err)
				}
				frames[i], err = stanza.Marshal(stanza.Node{Tag: "message",
					Attrs:   stanza.Attrs{"from": bobJID.String(), "id": NewID(), "t": "1700000000", "type": "text", "notify": "Bob"},
					Content: []stanza.Node{{Tag: "enc", Attrs: stanza.Attrs{"v": "2", "type": part.Type}, Content: part.Ciphertext}}})
				if err != nil {
					b.Fatal(err)
				}
			}
			delivered := 0
			deliver := func(_ context.Context, m *DecryptedMessage) error {
				if m.Message.GetExtendedTextMessage() == nil {
					b.Fatal("wrong content")
				}
				delivered++
				return nil
			}
			b.ReportAllocs()
			b.ResetTimer()
			for _, frame := range frames {
				node, err := stanza.Unmarshal(frame)
				if err != nil {
					b.Fatal(err)
				}
				info, err := ParseMessageInfo(node)
				if err != nil {
					b.Fatal(err)
				}
				encs, err := ParseEncs(node, info.IsGroup)
				if err != nil {
					b.Fatal(err)
				}
				lctx, unlock := a.locks.lock(ctx, userKey(info.Sender))
				run, err := a.decrypt(lctx, info, encs, deliver)
				unlock()
				if err != nil || !run.delivered {
					b.Fatalf("not delivered: %v", err)
				}
			}
			b.StopTimer()
			if delivered != b.N {
				b.Fatalf("delivered %d of %d", delivered, b.N)
			}
			reportRatio(b, "incoming", bs.name)
		})
	}
}
