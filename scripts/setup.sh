#!/usr/bin/env bash
# Install what ferrofs needs on a Debian 12 machine. Idempotent: each step is
# skipped when it is already done.
#
#   scripts/setup.sh [--fstests]
#
# --fstests adds what building and running fstests needs (`make fstests`;
# the list is the one in ../shared/fstests/README.md).
source "$(dirname "$0")/common.sh"

PKGS=(linux-source-6.12 rustc-web rust-web-src rustfmt-web rust-web-clippy
      libclang-19-dev clang-19 bc flex bison libelf-dev libssl-dev cpio
      busybox-static qemu-system-x86 qemu-utils xfsprogs e2fsprogs kmod
      python3 python3-matplotlib make gcc xz-utils dwarves util-linux
      libpmem-dev libpmemobj-dev pmdk-tools fio python3-lmdb liblmdb-dev
      acl attr)
if [ "${1:-}" = --fstests ]; then
  PKGS+=(autoconf automake libtool pkg-config uuid-dev xfslibs-dev libattr1-dev
         libacl1-dev libaio-dev libgdbm-dev libgdbm-compat-dev liburing-dev libcap-dev
         bc psmisc gawk file quota dbench)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing apt packages: ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages: present"
fi

if [ -x "$BINDGEN" ] && "$BINDGEN" --version | grep -q "$BINDGEN_VERSION"; then
  log "bindgen $BINDGEN_VERSION: present"
else
  log "building bindgen-cli $BINDGEN_VERSION (cargo install --locked)"
  mkdir -p "$BINDGEN_ROOT"
  cargo install --locked --quiet --root "$BINDGEN_ROOT" bindgen-cli --version "$BINDGEN_VERSION"
fi
