#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 (trust auth for user
# postgres) for the storage and end-to-end tests: uses the machine's server when it
# answers; otherwise starts the machine's Debian cluster; otherwise starts a throwaway
# cluster from Debian's PostgreSQL binaries (installing them if missing; initdb runs as
# the postgres user, never as root). Fails loudly when nothing works: tests never skip
# for a missing database.
set -euo pipefail
answers() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
wait_answer() {
	for _ in $(seq 1 30); do answers && return 0; sleep 1; done
	return 1
}
say() { echo "ensure-postgres: $*" >&2; }
if answers; then exit 0; fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	say "installing PostgreSQL from Debian's packages"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

# The machine's own cluster, when there is one.
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; then
	version=$(ls /etc/postgresql | sort -V | tail -n 1)
	say "starting the machine's PostgreSQL $version cluster"
	pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
	if wait_answer; then exit 0; fi
fi

# A throwaway cluster with trust auth, owned by the postgres user.
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
dir=/tmp/matrix-meta-interop-pg
say "starting a throwaway PostgreSQL cluster in $dir"
if [ ! -f "$dir/PG_VERSION" ]; then
	rm -rf "$dir"
	install -d -o postgres -g postgres -m 700 "$dir"
	su postgres -s /bin/sh -c "'$bindir/initdb' -D '$dir' -A trust -U postgres" >/dev/null
fi
su postgres -s /bin/sh -c "'$bindir/pg_ctl' -D '$dir' -l '$dir/server.log' -w \
	-o \"-c listen_addresses=127.0.0.1 -p 5432 -k /tmp -c fsync=off\" start" >/dev/null
if wait_answer; then exit 0; fi
say "no PostgreSQL at 127.0.0.1:5432 (see $dir/server.log)"
exit 1
