// Package metasim assembles the simulator of Meta's side of the interop protocol
// (PROTOCOL.md, Appendix) into one program: it reads the configuration, opens the
// database, loads or generates each network's keys, and runs the gateways
// (metasim/gateway), Meta's media hosts (metasim/media), the simulated users
// (metasim/simuser) and the control API (metasim/control) on their listeners.
//
// It is the composition root and holds no protocol logic of its own. It must not
// import the bridge (connector/, Matrix packages).
package metasim
