package interop

import (
	"context"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
)

// FuzzAccountInput feeds any frame to the account layer's parsers and to
// HandleMessage and HandleRetryReceipt of an Account without a connection: none may
// panic, whatever a peer or the gateway sends.
func FuzzAccountInput(f *testing.F) {
	for _, seed := range []string{
		`<message from="491701234567:1@s.whatsapp.net" id="M1" t="1" type="text"><enc type="msg" v="2">MwgB</enc></message>`,
		`<message from="491701234567:1@s.whatsapp.net" id="M1" type="text"><enc type="pkmsg" v="2" count="2">MwgBEiEF</enc></message>`,
		`<message from="1-2@g.us" id="M2" participant="491701234567@s.whatsapp.net" type="media"><enc type="pkmsg" v="2">Mw==</enc><enc mediatype="image" type="skmsg" v="2">Mwo=</enc></message>`,
		`<receipt from="491701234567@s.whatsapp.net" id="M1" type="retry"><retry count="1" id="M1" t="1" v="1"/><registration>AAAAAQ==</registration></receipt>`,
		`<receipt from="1-2@g.us" id="M1" participant="491701234567@s.whatsapp.net" type="retry"><retry count="2" id="M1" v="1"/><registration>AAAAAQ==</registration>` +
			`<keys><type>BQ==</type><identity>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</identity><key><id>AAAB</id><value>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</value></key>` +
			`<skey><id>AAAB</id><value>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</value><signature>` +
			`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==</signature></skey></keys></receipt>`,
	} {
		f.Add([]byte(seed))
	}
	acc, err := memstore.NewAccount(aliceJID)
	if err != nil {
		f.Fatal(err)
	}
	a, err := NewAccount(AccountConfig{Store: memstore.New(acc)})
	if err != nil {
		f.Fatal(err)
	}
	deliver := func(context.Context, *DecryptedMessage) error { return nil }
	f.Fuzz(func(t *testing.T, frame []byte) {
		n, err := stanza.Unmarshal(frame)
		if err != nil {
			return
		}
		if info, err := ParseMessageInfo(n); err == nil {
			_, _ = ParseEncs(n, info.IsGroup)
		}
		_, _ = ParseRetryReceipt(n)
		ctx := context.Background()
		if n.Tag == "message" {
			_, _ = a.HandleMessage(ctx, n, deliver)
		}
		if n.Tag == "receipt" {
			_ = a.HandleRetryReceipt(ctx, n)
		}
	})
}
