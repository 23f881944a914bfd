#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 for the storage tests:
# uses the machine's server when it answers, otherwise starts the Debian cluster, and
# fails loudly when neither works (tests never skip for a missing database).
set -euo pipefail
answers() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if answers; then exit 0; fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
	echo "ensure-postgres: installing PostgreSQL from Debian's packages" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do answers && exit 0; sleep 1; done
echo "ensure-postgres: no PostgreSQL at 127.0.0.1:5432" >&2
exit 1
