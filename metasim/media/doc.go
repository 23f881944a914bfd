// Package media is Meta's media side of PROTOCOL.md section 7 in the simulator.
//
// Host is Meta's media hosts: it keeps the encrypted blobs simulated Meta users upload
// (Upload), hands out media_conn credentials (MediaConn, the gateway's Config.MediaConn
// hook) and serves blobs over HTTP at unguessable directPaths only to requests that
// carry a valid, unexpired token, with Range support. Its faults (a flipped byte,
// a different length, 503) let tests exercise a receiver's refusals.
//
// Proxy is Meta's media proxy for third party → Meta user media: it fetches a
// provider's blob only from the integrator's registered media origin, signs the
// request with the callback secret, refuses blobs over the limit before reading them
// whole, and verifies fileEncSha256, the MAC and fileSha256 (interop/mediacrypt) before
// a simulated user sees a byte.
//
// It must not import the simulated users (metasim/simuser), the control API or the
// bridge; it knows the gateway only for its Integrator type.
package media
