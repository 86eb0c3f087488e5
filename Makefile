# One Time Chat pad device: every entry point.
#
#   make run      the emulated device (no hardware)
#   make test     everything CI checks: fmt, clippy, all tests
#   make bench    criterion benches + one report with the target ratios
#
# Each target installs what it needs first (scripts/install-deps).

CARGO ?= cargo
DATA ?= $(CURDIR)/build/demo-data

.PHONY: deps run test check fmt clippy unit bench bench-report fuzz clean

deps:
	@scripts/install-deps

run: deps
	scripts/run-demo

fmt:
	$(CARGO) fmt --all -- --check

# Every feature but bench-approve (it approves every prompt by itself, which
# would defeat the confirmation tests; it is built only by `make bench`).
FEATURES = otc-device/emulator,otc-device/spi-display,otc-device/debug-cli

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --features $(FEATURES) -- -D warnings
	$(CARGO) clippy -p otc-device --all-targets --features bench-approve -- -D warnings

unit:
	$(CARGO) test --workspace --features $(FEATURES)

check: fmt clippy unit

test: deps check

bench: deps
	$(CARGO) bench -p otc-proto --bench formats
	$(CARGO) bench -p otc-device --bench store
	$(CARGO) bench -p otc-device --bench audit
	$(CARGO) bench -p otc-device --bench rpc --features bench-approve
	$(CARGO) bench -p otc-ui --bench render
	@scripts/bench-report

bench-report:
	@scripts/bench-report

# Short fuzzing runs of every parser that input reaches: package opening
# (fuzz/) and the pad store's export header, legacy metadata, sizes and
# untrusted packages against a real store (firmware/fuzz/). Needs cargo-fuzz;
# runs on stable through RUSTC_BOOTSTRAP because no nightly toolchain can be
# fetched here. FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 30
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none open_package -- -max_total_time=$(FUZZ_SECONDS)
	cd firmware/fuzz && for t in export_header legacy_metadata size store_open; do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

clean:
	$(CARGO) clean
	rm -rf build
