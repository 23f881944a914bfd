// Package simuser simulates WhatsApp and Messenger users on Meta's side of
// PROTOCOL.md (sections 3-8, Appendix): each user has any number of devices, and each
// device is a real Signal party (an interop.Account over its own store) connected to
// the simulated gateway in-process through gateway.ConnectDevice, speaking the same
// stanzas as a third-party account.
//
// A Manager drives the users of one gateway: it creates users and devices, makes them
// send every content type of section 4 (with real encrypted media on Meta's media
// hosts), typing, receipts, blocks, reports and group changes, and records what each
// device receives (decrypted, with media fetched and verified) in an inbox persisted in
// the simulator's database, which tests and the control API read and wait on.
//
// It must not import the bridge (connector/, Matrix packages) or the control API; it
// reaches the gateway only through its public API and ConnectDevice.
package simuser
