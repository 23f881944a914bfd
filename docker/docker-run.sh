#!/bin/sh
# Entrypoint of the container image. It walks an admin through the first start:
#
#   1. no config.yaml in the data folder: write the example config (bridge -e), set it up
#      for a container (listen on 0.0.0.0, SQLite database in the data folder), say what
#      to fill in, and exit;
#   2. a config but no registration.yaml: write the registration (bridge -g), say how to
#      give it to Synapse, and exit;
#   3. both: run the bridge with them.
#
# Arguments starting with "-" are passed on to the bridge (e.g. --ignore-unsupported-server);
# any other command replaces the bridge, e.g. `docker run … IMAGE metasim -c metasim.yaml`.
#
# BRIDGE_BINARY and BRIDGE_DATA override the binary and the data folder (for tests).
set -eu

bin=${BRIDGE_BINARY:-/usr/bin/matrix-meta-interop}
data=${BRIDGE_DATA:-/data}
config=$data/config.yaml
registration=$data/registration.yaml

if [ "$#" -gt 0 ]; then
	case $1 in
	-*) ;;
	*) exec "$@" ;;
	esac
fi

if [ ! -d "$data" ] || [ ! -w "$data" ]; then
	echo "$data must be a folder that this container's user (uid $(id -u)) can write to." >&2
	echo "Mount a volume there, or chown the host folder you mount to $(id -u):$(id -g)." >&2
	exit 1
fi
cd "$data"

if [ ! -f "$config" ]; then
	"$bin" -c "$config" -e >/dev/null
	# A container is reached from outside, so the listener must not stay on 127.0.0.1,
	# and the data folder is the one place that survives a restart. The edits match
	# exact lines of the example; docker/docker_test.go fails when they stop matching.
	umask 077
	sed -e '/^appservice:/,/^[^ #]/ s|^    hostname: 127\.0\.0\.1$|    hostname: 0.0.0.0|' \
		-e '/^database:/,/^[^ #]/ s|^    type: postgres$|    type: sqlite3-fk-wal|' \
		-e "/^database:/,/^[^ #]/ s|^    uri: postgres://user:password@host/database?sslmode=disable\$|    uri: file:$data/bridge.db?_txlock=immediate\&_stmt_cache_size=64|" \
		"$config" >"$config.tmp"
	mv "$config.tmp" "$config"
	cat <<EOF
No config found: wrote an example to $config
(set up for a container: it listens on 0.0.0.0 and keeps a SQLite database in $data).
Fill in at least:
  homeserver.address and homeserver.domain     your Synapse
  appservice.address                           how Synapse reaches this container
  bridge.permissions                           who may use the bridge
  network: whatsapp / messenger                gateway_url, integrator_id,
                                               callback_secret, root public key
  network: callback_base_url                   where Meta reaches this bridge
Then start the container again to generate the appservice registration.
EOF
	exit 0
fi

if [ ! -f "$registration" ]; then
	if ! "$bin" -c "$config" -r "$registration" -g >/dev/null; then
		echo "Could not write the registration: set homeserver.address and homeserver.domain in $config first." >&2
		exit 1
	fi
	cat <<EOF
No registration found: wrote $registration
Add its path to app_service_config_files in Synapse's homeserver.yaml (copy the file
where Synapse can read it), restart Synapse, then start this container again.
EOF
	exit 0
fi

exec "$bin" -c "$config" -r "$registration" "$@"
