# syntax=docker/dockerfile:1
# The bridge (and metasim, to try a deployment) in a small image:
#   docker build -t matrix-meta-interop --build-arg COMMIT=$(git rev-parse HEAD) .
#   docker run --rm -v bridge-data:/data matrix-meta-interop
# The first start writes /data/config.yaml and stops; the second writes
# /data/registration.yaml for Synapse and stops; later starts run the bridge
# (docker/docker-run.sh). README.md, "Deploying the bridge", has the details.

# go.mod's Go version; Alpine's musl links statically without complaint.
ARG GO_IMAGE=golang:1.26-alpine3.24
ARG RUNTIME_IMAGE=alpine:3.24

FROM ${GO_IMAGE} AS build
# gcc and musl-dev: cgo for mattn/go-sqlite3.
RUN apk add --no-cache build-base
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG COMMIT=unknown
ARG TAG=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	COMMIT=${COMMIT} TAG=${TAG} sh docker/build.sh /out

FROM ${RUNTIME_IMAGE}
# ca-certificates: wss:// to Meta's gateways and https:// to the homeserver.
# tzdata: log timestamps in the admin's TZ, if they set one.
RUN apk add --no-cache ca-certificates tzdata \
	&& addgroup -S -g 1337 bridge \
	&& adduser -S -D -H -u 1337 -G bridge -h /data bridge \
	&& mkdir /data && chown 1337:1337 /data
COPY --from=build /out/matrix-meta-interop /out/metasim /usr/bin/
COPY --chmod=0755 docker/docker-run.sh /docker-run.sh
USER 1337:1337
WORKDIR /data
VOLUME /data
# The appservice listener (appservice.port): Synapse's transactions and Meta's
# callbacks and media fetches.
EXPOSE 29350
ENTRYPOINT ["/docker-run.sh"]
