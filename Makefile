# minnow: see README.md. `make demo` boots a kernel; `make test` runs every tier.
CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all deps build install demo test unit system lint lint-fuzz fuzz fuzz-smoke lab-setup lab-kernel lab-test bench clean

all: build

build:
	$(CARGO) build --release --workspace

## install: the release build of minnow, minnow-registry and minnow-runc into $(PREFIX)/bin
## (Docker: dockerd --add-runtime minnow=$(PREFIX)/bin/minnow-runc).
install:
	$(CARGO) build --release --bin minnow --bin minnow-registry --bin minnow-runc
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 target/release/minnow target/release/minnow-registry target/release/minnow-runc $(DESTDIR)$(PREFIX)/bin/

## demo: fetch a Debian cloud kernel + busybox initramfs, boot it, print the boot time.
demo:
	bash scripts/demo.sh

## test: tier 1 (unit) + tier 2 (tiny guests on /dev/kvm, containers and engines as root)
## + tier 3 (the nested-KVM lab).
test: unit system lab-test

deps:
	bash scripts/install-deps.sh

## unit: the tests that need neither root nor /dev/kvm: every crate's unit tests.
unit:
	$(CARGO) test --workspace --lib --bins

## system: the integration tests (tests/, crates/*/tests): tiny guests on this machine's
## /dev/kvm, error cases, containers on this host; they need root and /dev/kvm.
system: deps
	$(CARGO) test --workspace --tests

lint: lint-fuzz
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## lint-fuzz: the same for fuzz/, a workspace of its own.
lint-fuzz:
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --all --check
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --locked --all-targets -- -D warnings

## fuzz: every fuzz target (fuzz/run.sh; docs/design.md, "Fuzzing") for FUZZ_SECONDS each,
## one at a time at nice 19, from fuzz/corpus/ (the seeds) and fuzz/target/corpus/ (what
## earlier runs found). Crashes land in fuzz/artifacts/.
FUZZ_SECONDS ?= 300
fuzz:
	bash fuzz/run.sh all $(FUZZ_SECONDS)

## fuzz-smoke: replays fuzz/regressions/, then each target for FUZZ_SMOKE_SECONDS (20)
## from the stored corpus, leaving it as it is (CI runs this).
FUZZ_SMOKE_SECONDS ?= 20
fuzz-smoke:
	bash fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS)

lab-setup:
	bash lab/setup.sh

## lab-kernel: build minnow's minimal guest kernel (about 9 minutes the first time; cached).
lab-kernel:
	bash resources/guest/kernel/build.sh

## lab-test: real Linux guests under minnow inside the nested-KVM lab: the Debian cloud
## kernels 6.1 and 6.12 (ACPI, console in/out, SMP, virtio-blk, virtio-net), the minimal
## kernel (ext4 root, PVH, exit status), virtio-net (TAP, bridge, 64 MiB streams), images
## as microVMs, the jail; one lab boot per script.
lab-test: lab-setup lab-kernel build
	bash tests/lab/all.sh

## bench: every benchmark (bench/README.md): VMM start-up and memory here; in the lab, boot
## time against QEMU, container/microVM start-up and density, virtio-blk and virtio-net I/O.
bench: build
	bash bench/run.sh --density

clean:
	$(CARGO) clean
