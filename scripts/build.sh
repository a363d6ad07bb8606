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
