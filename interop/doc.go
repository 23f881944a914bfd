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
package interop
