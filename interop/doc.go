// Package interop is the provider side of Meta's messaging interoperability protocol
// (../shared/PROTOCOL.md): a client that keeps one account's connection to the gateway,
// matches iqs to their answers, acks what it handled, and encrypts and decrypts messages
// with the Signal protocol.
//
// It is layered like whatsmeow: socket (WebSocket + Noise) → stanza (XML codec) →
// this package (iq/ack bookkeeping, keep-alive, reconnects) → signal (sessions, sender
// keys, padding, phash) over store (libsignal stores) → waproto (content) → mediacrypt.
// Nothing here imports Matrix packages.
package interop
