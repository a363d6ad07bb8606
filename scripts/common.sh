# Shared settings for ferrofs scripts. Source it; do not run it.
# Every path the project keeps outside the repository is decided here, once.
set -euo pipefail

FERRO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FERRO_CACHE=${FERRO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrofs}
KVER_PKG=linux-source-6.12
KSRC_TARBALL=/usr/src/linux-source-6.12.tar.xz
BINDGEN_VERSION=0.73.2
BINDGEN_ROOT=$FERRO_CACHE/bindgen-$BINDGEN_VERSION
BINDGEN=$BINDGEN_ROOT/bin/bindgen
export LIBCLANG_PATH=/usr/lib/llvm-19/lib

# The toolchain the kernel is built with. The rustup rustc first on PATH has no
# rust-src, so every kernel make call names Debian's rustc-web explicitly.
KRUSTC=/usr/bin/rustc
KRUSTDOC=/usr/bin/rustdoc
KMAKE_VARS=(RUSTC="$KRUSTC" RUSTDOC="$KRUSTDOC" BINDGEN="$BINDGEN" RUSTFMT=/usr/bin/rustfmt)

# Guest memory lives in this file, so pmem (a memmap= range of it) survives a
# QEMU restart or SIGKILL. The one place its path is set. tmpfs when there is
# room: a file on disk makes the host write back every page the guest dirties,
# which stalls the guest at random and makes timings noisy.
if [ -z "${PMEM_FILE:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ] &&
    [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -n 1)" -gt $((7 * 1024 * 1024)) ]; then
    PMEM_FILE=/dev/shm/ferrofs-guest-ram.img
  else
    PMEM_FILE=$FERRO_CACHE/guest-ram.img
  fi
fi
GUEST_RAM=6G
# pmem0 = guest physical 4G..5G, pmem1 = 5G..6G
PMEM_CMDLINE="memmap=1G!4G memmap=1G!5G"

log() { printf '[ferrofs] %s\n' "$*" >&2; }
die() { printf '[ferrofs] error: %s\n' "$*" >&2; exit 1; }

# Kernel build directory, keyed by kernel version, config fragment and rustc.
kernel_key() {
  local kv frag rv
  kv=$(dpkg-query -W -f='${Version}' "$KVER_PKG" 2>/dev/null || echo none)
  frag=$(sha256sum "$FERRO_ROOT/scripts/kernel.config" | cut -c1-12)
  rv=$("$KRUSTC" --version 2>/dev/null | tr -c 'a-zA-Z0-9.\n' _ || echo none)
  printf '%s-%s-%s' "$kv" "$frag" "$(printf '%s' "$rv" | sha256sum | cut -c1-8)"
}
kernel_dir() { printf '%s/kernel-%s' "$FERRO_CACHE" "$(kernel_key)"; }
