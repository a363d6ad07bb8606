#!/usr/bin/env bash
# rustfmt on the module and the tools, clippy on the tools, and the kernel's
# CLIPPY=1 build of the module.
source "$(dirname "$0")/common.sh"
cd "$FERRO_ROOT"
rc=0
log "rustfmt --check (module)"
/usr/bin/rustfmt --edition 2021 --check src/ferrofs_mod.rs || rc=1
log "cargo fmt --check (tools)"
(cd tools && cargo fmt --check) || rc=1
log "cargo clippy (tools)"
(cd tools && cargo clippy --release --all-targets -- -D warnings) || rc=1
if [ -x /usr/bin/clippy-driver ] || command -v clippy-driver >/dev/null; then
  log "clippy on the module (CLIPPY=1)"
  KDIR=$(kernel_dir)
  make -C "$KDIR" -s "${KMAKE_VARS[@]}" CLIPPY=1 CLIPPY_DRIVER=/usr/bin/clippy-driver M="$FERRO_ROOT" modules || rc=1
fi
exit $rc
