#!/usr/bin/env bash
# Benchmarks through the whole stack (`make bench`): the interop/ per-message floor,
# both directions through the real Synapse, metasim and the bridge, the bridge's own
# ceiling with a load generator playing the homeserver, its memory per connected
# login, and media (1, 20 and 100 MiB files each way, MB/s and peak memory growth,
# next to interop/mediacrypt's bare speed). Prints tables and writes JSON under
# bench/results/. Extra arguments go to the command (`bash scripts/bench.sh -pairs 20
# -messages 200`; `-h` lists them), as does BENCH_ARGS (`make bench BENCH_ARGS="-modes
# media"`). About 5-10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
# The floor's SQL benchmarks need PostgreSQL; the stack mode needs the Synapse chroot
# (built on first use, about a minute) and root, since Synapse runs under chroot.
bash scripts/ensure-postgres.sh
bash scripts/synapse-chroot.sh >/dev/null
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
exec go run -tags goolm ./bench/cmd/stackbench ${BENCH_ARGS:-} "$@"
