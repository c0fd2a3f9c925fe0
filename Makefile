# masq's entry points. `make test` is what CI runs (.ci/run): every test,
# the namespace tests included when run as root.

GO      ?= go
BIN     := bin/masq
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Unit tests: everything but the root-only namespace tests. bench/ is a
# module of its own (it keeps golang.org/x/image out of masq's go.mod), so
# ./... stops at it and its tests run by a separate step.
UNIT    = $(shell $(GO) list ./... | grep -v /e2e)
# staticcheck 2026.2.2 (module v0.8.2), the latest, which knows Go 1.26;
# bump it with go.mod's go line. `make tools` (or the first lint) installs it
# into bin/ once, .ci/run while it downloads modules; lint then runs offline
# and never picks up another version from PATH.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CURDIR)/bin/staticcheck-$(STATICCHECK_VERSION)/staticcheck

.PHONY: build test unit race allocs e2e vm-guest bench bench-go soak fuzz lint tools demo clean

# Without cgo: a cgo binary cannot drop its capabilities on every thread
# (package internal/sandbox), and masq needs no C.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/masq

# All tests: lint, unit tests under the race detector, the allocation
# tests without it, then the namespace tests (they skip when not root).
test: lint race allocs e2e

unit:
	$(GO) test -count=1 $(UNIT)
	cd bench && $(GO) test -count=1 ./...

race:
	$(GO) test -race -count=1 $(UNIT)
	cd bench && $(GO) test -race -count=1 ./...

# The "no allocation per packet" tests (their names contain "Allocat"),
# without the race detector: under it sync.Pool drops items at random, so
# the pooled paths allocate and those tests skip themselves there.
allocs:
	$(GO) test -count=1 -run Allocat $(UNIT)

e2e: build
	MASQ_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -v -timeout 10m ./e2e/

# The QEMU test guest (kernel + initramfs from Debian packages) into its
# cache, /var/cache/masq-vm unless MASQ_VM_CACHE or XDG_CACHE_HOME says
# otherwise; the VM tests build it themselves when it is missing.
vm-guest:
	bash test/vm/build.sh

# masq beside kernel NAT, pasta and slirp4netns in namespaces (root);
# knobs in bench/README.md.
bench: build
	MASQ=$(CURDIR)/$(BIN) bash bench/run.sh

# 30 minutes of mixed guest traffic through masq (root, not in CI): RSS,
# descriptors and threads sampled into bench/out/soak/soak.csv and drawn in
# soak.png; fails unless the last 20 minutes are flat within 10 %. Knobs in
# bench/soak.sh.
soak: build
	MASQ=$(CURDIR)/$(BIN) bash bench/soak.sh

# Go microbenchmarks of the in-memory path (all in masq's module; the bench
# module holds the tools of `make bench`).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(UNIT)

# Fuzz each parser of guest or user bytes for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(FUZZTIME) ./dhcp/
	$(GO) test -run '^$$' -fuzz '^FuzzHandle6$$' -fuzztime $(FUZZTIME) ./dhcp/
	$(GO) test -run '^$$' -fuzz '^FuzzNeighborFilter$$' -fuzztime $(FUZZTIME) ./stack/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./ports/
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) ./kubevirt/
	$(GO) test -run '^$$' -fuzz '^FuzzMessages$$' -fuzztime $(FUZZTIME) ./link/vhostuser/
	$(GO) test -run '^$$' -fuzz '^FuzzChains$$' -fuzztime $(FUZZTIME) ./link/vhostuser/

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd bench && $(GO) vet ./...
	$(STATICCHECK) ./...
	cd bench && $(STATICCHECK) ./...

tools: $(STATICCHECK)

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# VM=1 runs the guest as a QEMU VM on masq's --socket link.
demo: build
	MASQ=$(CURDIR)/$(BIN) VM=$(VM) bash scripts/demo.sh

clean:
	rm -rf bin
