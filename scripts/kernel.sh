#!/usr/bin/env bash
# Build (or reuse) the ferrofs test kernel. Prints the build directory.
# Cached under $FERRO_CACHE, keyed by kernel version, config fragment and rustc.
source "$(dirname "$0")/common.sh"

KDIR=$(kernel_dir)
if [ -f "$KDIR/.ferrofs-built" ]; then
  log "kernel: cached at $KDIR"
  echo "$KDIR"; exit 0
fi
[ -f "$KSRC_TARBALL" ] || die "$KSRC_TARBALL missing: run scripts/setup.sh"
[ -x "$BINDGEN" ] || die "bindgen missing at $BINDGEN: run scripts/setup.sh"

if [ ! -f "$KDIR/Makefile" ]; then
  log "kernel: extracting $KSRC_TARBALL into $KDIR"
  rm -rf "$KDIR.tmp"; mkdir -p "$KDIR.tmp"
  tar -xf "$KSRC_TARBALL" -C "$KDIR.tmp" --strip-components=1
  rm -rf "$KDIR"; mv "$KDIR.tmp" "$KDIR"
fi

kmake() { make -C "$KDIR" -s "${KMAKE_VARS[@]}" "$@"; }
log "kernel: configuring"
kmake rustavailable >/dev/null || die "make rustavailable failed: the Rust toolchain is not usable for this kernel"
kmake defconfig >/dev/null
kmake kvm_guest.config >/dev/null
"$KDIR/scripts/kconfig/merge_config.sh" -m -O "$KDIR" "$KDIR/.config" "$FERRO_ROOT/scripts/kernel.config" >/dev/null
kmake olddefconfig >/dev/null
for opt in CONFIG_RUST CONFIG_FS_DAX CONFIG_BLK_DEV_PMEM CONFIG_X86_PMEM_LEGACY CONFIG_PROVE_LOCKING CONFIG_9P_FS CONFIG_XFS_FS; do
  grep -q "^$opt=y" "$KDIR/.config" || die "$opt=y did not survive configuration (missing dependency?); see $KDIR/.config"
done

log "kernel: building bzImage and module support with $(nproc) jobs (about 10-15 minutes the first time)"
start=$SECONDS
kmake -j"$(nproc)" bzImage modules 2>&1 | grep -v -E '^\s*$' | tail -n 40 >&2 || true
[ -f "$KDIR/arch/x86/boot/bzImage" ] || die "kernel build failed"
[ -f "$KDIR/rust/kernel.o" ] || [ -f "$KDIR/rust/libkernel.rmeta" ] || die "kernel Rust crates were not built"
touch "$KDIR/.ferrofs-built"
log "kernel: built in $((SECONDS - start)) s"
echo "$KDIR"
