// Package bench measures the bridge through the whole stack: messages per second and
// latency in each direction with real Synapse and metasim (stack mode), the bridge's
// own ceiling with a load generator playing the homeserver (loadgen mode), its CPU
// time per message and resident memory per connected login, next to the interop/
// per-message floor measured in the same run. cmd/stackbench is its command line;
// it must not be imported by the bridge.
package bench
