// Package interop is the provider side of Meta's messaging interoperability protocol
// (../shared/PROTOCOL.md): a client that keeps one account's connection to the gateway,
// matches iqs to their answers, acks what it handled, and encrypts and decrypts messages
// with the Signal protocol.
//
// It is layered like whatsmeow: socket (WebSocket + Noise) → stanza (XML codec) →
// this package (iq/ack bookkeeping, keep-alive, reconnects) → signal (sessions, sender
// keys, padding, phash) over store (libsignal stores) → waproto (content) → mediacrypt.
// Nothing here imports Matrix packages.
//
// The connection layer in this package is generic over stanzas: Client runs one
// account's connection (Run), reports what arrives as typed events to one Handler in
// order, and offers SendIQ, SendMessage (waits for the gateway's ack), SendNode and
// Ack. Delivered messages, receipts and notifications are acked only when the upper
// layer calls Ack, after it durably handled them. The typed request helpers (prekeys,
// usync, media_conn, blocklist, spam, receipts, chatstates) build the iqs of
// PROTOCOL.md sections 5, 7 and 8 and parse their answers strictly.
//
// The connection layer must not import interop/socket (the bridge passes a Dialer
// wrapping socket.Dial) nor interop/signal (which builds on top of it).
//
// The account layer on top (Account: account.go, outgoing.go, incoming.go, retry.go,
// keys.go, devices.go) joins one Client with one signal.Manager: key uploads and
// rotation, device lists, 1:1 and group sends with the retry policy of section 10,
// decryption with delivery inside the store transaction, and retry receipts. It is
// the only part that imports interop/signal; dial.go (SocketDialer) the only one that
// imports interop/socket.
package interop
