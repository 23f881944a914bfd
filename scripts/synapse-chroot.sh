#!/usr/bin/env bash
# Builds (once) a minimal Debian sid chroot holding the real Synapse, and prints its path.
# Debian's stable has no matrix-synapse package; sid has. The chroot is cached outside
# the checkout so later runs start Synapse in seconds. Safe to run concurrently (flock).
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/matrix-meta-interop"
root="$cache/synapse-sid"
mkdir -p "$cache"
exec 9>"$cache/synapse-sid.lock"
flock 9
if [ -x "$root/usr/bin/python3" ] && [ -f "$root/.synapse-ready" ]; then
	echo "$root"
	exit 0
fi
say() { echo "synapse-chroot: $*" >&2; }
if ! command -v debootstrap >/dev/null 2>&1; then
	say "installing debootstrap"
	apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi
rm -rf "$root.tmp"
say "building a minimal Debian sid chroot (about a minute, once)"
debootstrap --variant=minbase sid "$root.tmp" >"$cache/debootstrap.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
	sleep 5
	say "debootstrap: $(tail -n 1 "$cache/debootstrap.log" | cut -c1-100)"
done
wait "$pid" || { say "debootstrap failed, see $cache/debootstrap.log"; exit 1; }
say "installing matrix-synapse in the chroot"
chroot "$root.tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
	apt-get -o Acquire::Check-Valid-Until=false update -qq >&2
chroot "$root.tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
	apt-get -o Acquire::Check-Valid-Until=false install -y -qq --no-install-recommends matrix-synapse >"$cache/apt.log" 2>&1 \
	|| { say "apt-get install failed, see $cache/apt.log"; exit 1; }
chroot "$root.tmp" /usr/bin/python3 -c 'import synapse; print(synapse.__version__)' >"$root.tmp/.synapse-ready"
rm -rf "$root"
mv "$root.tmp" "$root"
say "Synapse $(cat "$root/.synapse-ready") ready in $root"
echo "$root"
