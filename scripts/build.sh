#!/usr/bin/env bash
# Set-up and build, each step skipped when done: packages, bindgen, kernel,
# module, tools.
source "$(dirname "$0")/common.sh"
cd "$FERRO_ROOT"
bash scripts/setup.sh
bash scripts/kernel.sh >/dev/null
log "module: building ferrofs.ko"
bash scripts/module.sh
log "tools: cargo build --release"
(cd tools && cargo build --release --quiet)
# The PMDK client of tests/26-pmdk.sh (the guest runs it as $BIN/pmdk-client;
# nothing is compiled in the guest).
PMDK_SRC=tests/pmdk/pmdk_client.c
PMDK_BIN=tools/target/release/pmdk-client
if [ "$PMDK_BIN" -nt "$PMDK_SRC" ] && [ "$PMDK_BIN" -nt scripts/build.sh ]; then
  log "pmdk-client: up to date"
else
  log "pmdk-client: gcc $PMDK_SRC"
  printf '#include <libpmem.h>\n#include <libpmemobj.h>\n' | gcc -E -x c - >/dev/null 2>&1 ||
    die "PMDK headers (libpmem.h, libpmemobj.h) missing: run scripts/setup.sh (it installs libpmem-dev libpmemobj-dev)"
  gcc -O2 -g -Wall -Wextra -Werror -o "$PMDK_BIN" "$PMDK_SRC" -lpmemobj -lpmem
fi
