// Package waproto holds the protobuf schemas of the interop protocol, each generated
// into its own Go package: waE2E (message content, PROTOCOL.md section 4), waWa6 (the
// Noise handshake messages and the client payload, section 2) and waCert (the gateway's
// certificate chain, section 2).
//
// The field numbers are WhatsApp's public ones; never renumber. The generated packages
// import only google.golang.org/protobuf and nothing from the rest of the project.
// Regenerate with `go generate ./interop/waproto` (needs protoc and protoc-gen-go
// v1.36.12 on PATH).
package waproto

//go:generate protoc --go_out=. --go_opt=paths=source_relative waE2E/waE2E.proto waWa6/waWa6.proto waCert/waCert.proto
