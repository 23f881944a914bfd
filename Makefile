# The two commands a newcomer needs are `make demo` and `make test` (see README.md).
GO ?= go
GOFLAGS_BRIDGE := -tags goolm
# Storage tests run against this PostgreSQL; scripts/ensure-postgres.sh starts one if
# none answers.
export INTEROP_TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable

.PHONY: test vet unit e2e e2e-crash demo bench bench-interop generate

test: vet unit e2e

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(GOFLAGS_BRIDGE) ./...

unit:
	bash scripts/ensure-postgres.sh
	$(GO) test $(GOFLAGS_BRIDGE) -count=1 -timeout 30m ./...

# Tests against the real Synapse (started from the cached Debian sid chroot that
# scripts/synapse-chroot.sh builds on first use, about a minute).
# The end-to-end suite (e2e/): the real Synapse, metasim and the bridge process, on
# SQLite and PostgreSQL.
e2e:
	bash scripts/synapse-chroot.sh >/dev/null
	bash scripts/ensure-postgres.sh
	$(GO) test -tags goolm,synapse -count=1 -timeout 30m -run Synapse ./connector/... ./e2e/...

# The SIGKILL test (SQLite and PostgreSQL), kept out of make test while a rare loss
# there is open (see e2e/crash_test.go).
e2e-crash:
	bash scripts/synapse-chroot.sh >/dev/null
	bash scripts/ensure-postgres.sh
	E2E_CRASH=1 $(GO) test -tags goolm,synapse -count=1 -timeout 30m -run 'TestSynapseSIGKILLLosesNothing' ./e2e/

# The demo stack: Synapse + metasim + the bridge on SQLite, a scripted conversation,
# then it stays up for a Matrix client until Ctrl-C.
demo:
	$(GO) run -tags goolm ./e2e/cmd/demo

# Benchmarks through the whole stack (bench/, scripts/bench.sh): both directions
# through Synapse, metasim and the bridge, the bridge's own ceiling against a load
# generator, memory per login, next to the interop/ floor. JSON in bench/results/.
bench:
	bash scripts/bench.sh

# The interop/ library's micro-benchmarks alone.
bench-interop:
	bash scripts/ensure-postgres.sh
	$(GO) test $(GOFLAGS_BRIDGE) -run '^$$' -bench . -benchmem ./interop/...

# Regenerates the protobuf code: protoc from Debian's protobuf-compiler, protoc-gen-go
# at the version go.mod pins, installed into the Go bin folder.
generate:
	command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$$($(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" $(GO) generate ./interop/waproto
