# kselftest-style helpers for the guest test files. Source it.
# A case is a shell function run in a subshell with `set -e`; exit status
# 0 = pass, 1 = fail, 4 = skip (kselftest's KSFT_SKIP). Each case prints one
# TAP line; its output becomes `# ` diagnostics when it fails or skips.
SRC=${FERRO_SRC:-/mnt/src}
BIN=$SRC/tools/target/release
MKFS=$BIN/mkfs-ferrofs
FT=$BIN/ferrotest
KO=$SRC/ferrofs.ko
MNT=/mnt/test
DEV=/dev/pmem0
DEV2=/dev/pmem1
STATS=/sys/fs/ferrofs/pmem0

fail() { echo "$*"; exit 1; }
skip() { echo "$*"; exit 4; }
# assert_eq EXPECTED ACTUAL WHAT
assert_eq() { [ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"; }
# expect_errno CMD... : the command must fail; prints its message.
expect_fail() { if "$@" 2>/tmp/err; then fail "expected failure: $*"; fi; cat /tmp/err; }

t() {
  local name=$1 out rc; shift
  out=$( (set -e; "$@") 2>&1 ); rc=$?
  case $rc in
    0) echo "ok - $name" ;;
    4) echo "ok - $name # SKIP $(printf '%s\n' "$out" | tail -n 1)" ;;
    *) echo "not ok - $name"; printf '%s\n' "$out" | tail -n 25 | sed 's/^/# /' ;;
  esac
}

module_loaded() { grep -qw ferrofs /proc/filesystems; }
load_module() { module_loaded || insmod "$KO"; }
# fresh_mount [DEV [MNT]]: mkfs + mount -o dax
fresh_mount() {
  local d=${1:-$DEV} m=${2:-$MNT}
  mountpoint -q "$m" && umount "$m"
  mkdir -p "$m"
  "$MKFS" -q -f "$d"
  mount -t ferrofs -o dax "$d" "$m"
}
remount() {
  local d=${1:-$DEV} m=${2:-$MNT}
  umount "$m"
  mount -t ferrofs -o dax "$d" "$m"
}
counter() { cat "$STATS/$1"; }
# The kernel log is never cleared (make check scans all of it): cases mark
# where they start and read what came after.
kmsg_mark() { KMSG_MARK="ferrofs-test-mark-$RANDOM$RANDOM"; echo "$KMSG_MARK" > /dev/kmsg; }
kmsg_since() { dmesg | sed -n "/$KMSG_MARK/,\$p"; }
