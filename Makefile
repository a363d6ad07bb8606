# ferrofs: `make run` shows it working, `make check` tests it. Both set up
# everything they need on a fresh Debian 12 machine (see README.md).
.PHONY: all setup kernel module tools run check bench fstests crash-test shell lint clean

# Set-up and every build step (packages, bindgen, kernel, module, tools).
all:
	@bash scripts/build.sh

setup:
	@bash scripts/setup.sh

kernel: setup
	@bash scripts/kernel.sh >/dev/null

# Rebuild only the module (the kernel must be built).
module:
	@bash scripts/module.sh

tools:
	@cd tools && cargo build --release --quiet

run:
	@bash scripts/build.sh
	@bash scripts/vm.sh -- bash tests/demo.sh

check:
	@bash scripts/check.sh

# ferrofs against ext4 -o dax and xfs -o dax in one guest; results/bench/<time>/.
bench:
	@bash scripts/bench.sh

# fstests on ferrofs and ext4 -o dax in one guest (not part of check: long);
# FSTESTS_LIST=, FSTESTS_GROUP=, FSTYP=, FSTESTS_SRC=; results/fstests/<time>/.
fstests:
	@bash scripts/fstests.sh

# Power cuts: SIGKILL the guest mid-workload, reboot, check every fsync that
# returned (CRASH_ROUNDS=N).
crash-test:
	@bash scripts/crash-test.sh

shell:
	@bash scripts/build.sh
	@bash scripts/vm.sh --shell

lint:
	@bash scripts/lint.sh

clean:
	@bash scripts/module.sh clean 2>/dev/null || true
	@cd tools && cargo clean
