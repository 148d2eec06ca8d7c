# tenantnet: `make demo` shows the model, `make test` runs every test tier.
# Both need root (network namespaces) and install what they need themselves.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED := 0
BIN := $(CURDIR)/bin
# The crash tests' build (-tags faultinject: the plugin can be made to kill
# itself at a named step, pkg/fault): test-only, never installed.
FAULTBIN := $(CURDIR)/.faultbin
# What the binaries say with --version: the checkout they were built from.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS := -X github.com/tenantnet/tenantnet/pkg/buildinfo.gitDescribe=$(VERSION)

.PHONY: all build build-faultinject deps demo test test-host test-unit test-e2e test-vm test-clients bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

build-faultinject:
	$(GO) build -tags faultinject -ldflags "$(LDFLAGS)" -o $(FAULTBIN)/ ./cmd/...

deps:
	scripts/install-deps.sh

demo: deps
	scripts/demo.sh

## test: every tier; a failure in any fails the run.
test: test-host test-vm test-clients

## test-host: unit tests and the end-to-end suite on this machine's kernel.
test-host: test-unit test-e2e

test-unit: deps
	@echo "==== host tier: unit tests"
	$(GO) test -count=1 ./pkg/... ./plugins/...

test-e2e: deps build build-faultinject
	@echo "==== host tier: end-to-end, nftables backend"
	TENANTNET_BIN_DIR=$(BIN) TENANTNET_FAULT_BIN_DIR=$(FAULTBIN) TENANTNET_TEST_BACKEND=nftables $(GO) test -count=1 ./test/e2e/...
	@echo "==== host tier: end-to-end, iptables backend"
	TENANTNET_BIN_DIR=$(BIN) TENANTNET_FAULT_BIN_DIR=$(FAULTBIN) TENANTNET_TEST_BACKEND=iptables $(GO) test -count=1 ./test/e2e/...

## test-vm: the tier on a real Debian kernel under QEMU (802.1Q VLANs, two
## hosts over a trunk, the e2e suite with and without br_netfilter).
test-vm: deps
	@echo "==== VM tier (real Debian kernel under QEMU)"
	scripts/test-vm.sh

## test-clients: cnitool, podman (CNI backend), containerd/CRI and libcni
## driving tenantnet, each inside a simulated host namespace.
test-clients: deps build
	@echo "==== client tier: cnitool, podman, containerd, libcni"
	scripts/install-clients.sh
	TENANTNET_BIN_DIR=$(BIN) $(GO) test -count=1 ./test/clients/

## bench: tenantnet against the reference plugins, side by side, in one run;
## writes docs/benchmarks.md.
bench:
	scripts/bench.sh

clean:
	rm -rf $(BIN) $(FAULTBIN)
