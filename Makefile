# One Time Chat pad device: every entry point.
#
#   make run      the emulated device (no hardware)
#   make chat-demo  two emulated devices and a relay, to chat with otc
#   make test     everything CI checks: fmt, clippy, all tests, the QEMU system test
#   make bench    criterion benches + one report with the target ratios
#   make cross    static aarch64 (musl) release build of otc-device, checked
#   make image    the SD card image: image/out/otc-pi.img (+ .sha256, .bmap)
#   make qemu     boot the image in QEMU (window, or headless + serial)
#   make qemu-test  the system test in QEMU (seal, reject, power cuts)
#   make qemu-pair  two machines and a USB stick in QEMU (pairing, issue 17)
#   make qemu-test-pi3  the image on QEMU's Raspberry Pi 3 B machine (issue 24)
#   make release  the signed release: image/out/otc-pi.img.xz + .sha256 + .sig
#                 (OTC_RELEASE_KEY=PATH, an Ed25519 SSH key outside the repo),
#                 with the packages beside it
#   make packages the .deb files of otc and otc-relay and static otc tarballs
#                 (image/out/)
#
# Each target installs what it needs first (scripts/install-deps).

CARGO ?= cargo
# rustc has crashed with SIGSEGV (a stack overflow: it says so and suggests
# this setting) a few times here while compiling the crates built on the
# Slint-generated UI, at random under load; 16 MiB was still too little
# for the feature build on a loaded machine, 32 MiB went through. A 64 MiB
# stack for rustc's threads makes that build reliable; it also becomes the
# default stack of threads the tests spawn, which costs address space, not
# memory.
export RUST_MIN_STACK ?= 67108864
DATA ?= $(CURDIR)/build/demo-data

.PHONY: deps run chat-demo test check fmt clippy unit bench bench-report fuzz clean cross image image-check qemu qemu-test qemu-pair qemu-test-pi3 image-deps release release-test packages packages-test deny

deps:
	@scripts/install-deps

run: deps
	scripts/run-demo

chat-demo: deps
	scripts/chat-demo

fmt:
	$(CARGO) fmt --all -- --check

# Every feature. (The RPC bench's auto-approving screen is a twin defined in
# benches/rpc.rs, not a feature: no build of the device can contain it.)
FEATURES = otc-device/emulator,otc-device/spi-display,otc-device/debug-cli

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --features $(FEATURES) -- -D warnings

# Tests run under cargo-nextest, one process per test, with the timeouts of
# .config/nextest.toml: a hung test is killed after 5 minutes and named.
# nextest does not run doctests, so they run separately with cargo test.
unit:
	@command -v cargo-nextest >/dev/null || { echo "cargo-nextest is missing: run scripts/install-deps" >&2; exit 1; }
	$(CARGO) nextest run --workspace --features $(FEATURES) --no-tests=warn
	$(CARGO) test --doc --workspace --features $(FEATURES)

# The release signature with a throwaway key: signs, verifies as the README
# tells owners to, and a changed byte fails.
release-test:
	image/release-test

# The .deb files installed for real with dpkg -i (then purged), the relay
# run as its unit runs it, the static otc tarballs run (packaging/test).
packages-test: deps image-deps
	packaging/test

check: fmt clippy unit release-test

# The README's test command (and CI's): the host checks, then the image's
# system test in QEMU (which cross-builds the release binary and the image).
test: deps check packages-test qemu-test qemu-pair qemu-test-pi3

bench: deps
	$(CARGO) bench -p otc-proto --bench formats
	$(CARGO) bench -p otc-pad --bench store
	$(CARGO) bench -p otc-device --bench audit
	$(CARGO) bench -p otc-device --bench rpc
	$(CARGO) bench -p otc-ui --bench render
	$(CARGO) bench -p otc-client --bench roundtrip
	$(CARGO) bench -p otc-relay --bench throughput
	$(CARGO) bench -p otc-relay --bench load
	@scripts/bench-report

bench-report:
	@scripts/bench-report

# Short fuzzing runs of every parser that input reaches: package opening,
# the pad store's export header, legacy metadata, sizes and untrusted
# packages against a real store. One workspace (fuzz/), one lock file; every
# target in it is run (`cargo fuzz list`). Needs cargo-fuzz; runs on stable
# through RUSTC_BOOTSTRAP because no nightly toolchain can be fetched here.
# FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 30
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $$($(CARGO) fuzz list); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# Licences and bans of every dependency (deny.toml): cargo-deny is built once
# (about 15 minutes on 2 cores, so not part of `make test`); the advisory
# database needs the internet, so only licenses and bans are checked. Not
# --offline: with all features (deny.toml's graph) cargo metadata needs
# crates no build here downloads (android-activity), from crates.io.
deny:
	command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked
	$(CARGO) deny check licenses bans

# --- the appliance (image/) ---------------------------------------------------
# A static aarch64 musl release binary with the feature spi-display (the
# SPI panels of hw/README.md) and none of the features emulator or
# debug-cli; image/check-release-binary proves both.
CROSS_TARGET = aarch64-unknown-linux-musl
TARGET_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
CROSS_BIN = $(TARGET_DIR)/$(CROSS_TARGET)/release/otc-device
IMAGE = image/out/otc-pi.img
# `make image DATA=DIR` preloads an otc-device data directory (DATA given on
# the command line only; the DATA default above is the demo's).
IMAGE_DATA = $(if $(filter command line,$(origin DATA)),--data $(DATA))

cross: deps
	$(CARGO) build --release --locked --target $(CROSS_TARGET) -p otc-device --features otc-device/spi-display
	image/check-release-binary $(CROSS_BIN)

image-deps:
	@scripts/install-deps image

image: cross image-deps
	image/build --bin $(CROSS_BIN) --out image/out $(IMAGE_DATA)

# Builds the image twice from the same inputs and compares the bytes.
image-check: cross image-deps
	image/build --bin $(CROSS_BIN) --out image/out/check-1 $(IMAGE_DATA)
	image/build --bin $(CROSS_BIN) --out image/out/check-2 $(IMAGE_DATA)
	cmp image/out/check-1/otc-pi.img image/out/check-2/otc-pi.img
	cmp image/out/check-1/otc-pi.img.bmap image/out/check-2/otc-pi.img.bmap
	@echo "image-check: two builds are identical: $$(cut -d' ' -f1 image/out/check-1/otc-pi.img.sha256)"

# Boots a copy of the image (image/out/qemu-card.img, like a flashed card:
# it keeps its state between runs; delete it to start afresh), so that
# otc-pi.img keeps its sha256.
qemu: image
	test -f image/out/qemu-card.img || cp $(IMAGE) image/out/qemu-card.img
	image/qemu image/out/qemu-card.img

# Boots the image in QEMU and drives it through RPC, QMP screendumps and
# tablet taps, with power cuts; checks the data partition's growth, the
# restart of a killed otc-device and a watchdog reset. Part of `make test`.
qemu-test: deps cross image-deps
	$(CARGO) build -p otc-device --features debug-cli -p otc-image-verify
	OTC_CROSS_BIN=$(CROSS_BIN) OTC_HOST_BIN=$(TARGET_DIR)/debug/otc-device \
	  OTC_VERIFY_BIN=$(TARGET_DIR)/debug/otc-image-verify image/qemu-test

# Two copies of the release image with empty data partitions boot as
# machines A and B and pair by taps through their screens: New contact on A
# (export to a FAT stick image), the stick moved to B over QMP, Import
# contact on B, the same fingerprint on both, then a seal on A opened on B
# (image/qemu-pair). Screenshots in image/out/qemu-pair/. Part of `make test`.
qemu-pair: deps cross image-deps
	OTC_CROSS_BIN=$(CROSS_BIN) image/qemu-pair

# The release image on QEMU's raspi3b machine (image/qemu-test-pi3): the
# Pi 3's device tree, SD host and USB Ethernet; Ethernet plugged in late,
# a seal by a tap, Reject, a power cut amid approved seals, a boot without
# a display (init backs off). What the harness
# changes to boot it there is listed in hw/README.md. Part of `make test`.
qemu-test-pi3: deps cross image-deps
	$(CARGO) build -p otc-device --features debug-cli -p otc-image-verify
	OTC_CROSS_BIN=$(CROSS_BIN) OTC_HOST_BIN=$(TARGET_DIR)/debug/otc-device \
	  OTC_VERIFY_BIN=$(TARGET_DIR)/debug/otc-image-verify image/qemu-test-pi3

# The signed release (image/release): the image xz-compressed, the SHA-256 of
# every release file, and a detached `ssh-keygen -Y sign` signature of that
# checksum file, made with the key at OTC_RELEASE_KEY (never in the repo).
# RELEASE_FILES: more files released with the image, checksummed and signed
# with it (the .deb packages go here).
# (the .deb files and the otc tarballs go here by default).
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
PACKAGE_FILES = image/out/otc_$(VERSION)_amd64.deb image/out/otc-relay_$(VERSION)_amd64.deb \
  image/out/otc-$(VERSION)-x86_64-linux.tar.gz image/out/otc-$(VERSION)-aarch64-linux.tar.gz
RELEASE_FILES ?= $(PACKAGE_FILES)
packages: deps
	packaging/build --out image/out

release: image packages
	image/release --dir image/out $(if $(OTC_RELEASE_KEY),--key $(OTC_RELEASE_KEY)) $(RELEASE_FILES)

clean:
	$(CARGO) clean
	rm -rf build image/out
