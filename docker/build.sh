#!/bin/sh
# Builds the bridge (matrix-meta-interop) and the simulator (metasim) as static
# binaries into the folder given as the first argument (default: the current folder).
#
# The Dockerfile's build stage runs this script, and docker/docker_test.go runs it too,
# so `go test ./...` checks that the image's build line still works and still gives
# static binaries.
#
# CGO is needed for mattn/go-sqlite3; the binaries are linked statically so that the
# final image needs no C library:
#   goolm                      the pure-Go olm implementation, so no libolm
#   sqlite_omit_load_extension SQLite's extension loader needs dlopen, which a static
#                              binary cannot offer
#   netgo, osusergo            Go's own DNS resolver and user lookup instead of libc's,
#                              which glibc cannot link statically (musl could; the
#                              tags make both behave the same)
# COMMIT and TAG may be set in the environment (the image has no .git to ask).
set -eu

out=${1:-.}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."

commit=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
tag=${TAG:-$(git describe --exact-match --tags 2>/dev/null || echo unknown)}
build_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tags=goolm,sqlite_omit_load_extension,netgo,osusergo
static='-linkmode external -extldflags "-static"'

export CGO_ENABLED=1
go build -tags "$tags" \
	-ldflags "-s -w $static -X main.Tag=$tag -X main.Commit=$commit -X main.BuildTime=$build_time" \
	-o "$out/matrix-meta-interop" ./bridge
go build -tags "$tags" -ldflags "-s -w $static" -o "$out/metasim" ./metasim/cmd/metasim
