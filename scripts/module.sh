#!/usr/bin/env bash
# Build ferrofs.ko against the cached test kernel. Extra args go to make
# (e.g. a single object, or CLIPPY=1).
source "$(dirname "$0")/common.sh"
KDIR=$(kernel_dir)
[ -f "$KDIR/.ferrofs-built" ] || [ -n "${FERRO_ALLOW_PARTIAL:-}" ] || die "kernel not built: run scripts/kernel.sh"
make -C "$KDIR" -s "${KMAKE_VARS[@]}" M="$FERRO_ROOT" "${@:-modules}"
