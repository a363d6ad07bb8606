#!/bin/bash
# Guest side of `make fstests` (scripts/fstests.sh). Not a test of
# tests/run.sh (only NN-*.sh are). For each file system, formats
# /dev/pmem0 (TEST_DEV) with it and runs fstests' `check` once per test, with
# /dev/pmem1 as SCRATCH_DEV, both mounted -o dax.
#
#   bash tests/fstests-guest.sh FSTESTS_TAR "FSTYPS" "TESTS"
#
# /mnt/out/fstests/status gets one line per finished test:
#   FSTYP TEST pass|fail|notrun|hung SECONDS
# and /mnt/out/fstests/current names the running one, so that the host can
# boot again after a test that hung or killed the guest; tests already in
# status are skipped. fstests' RESULT_BASE is /mnt/out/fstests/FSTYP.
source "$(dirname "$0")/lib.sh"
FSTTAR=$1 FSTYPS=$2 TESTS=$3
OUT=/mnt/out/fstests
mkdir -p "$OUT"
touch "$OUT/status"
per_test=${FSTESTS_TIMEOUT:-900}

# fstests writes into its tree (local.config, generated files, the tests'
# own scratch files): run a copy on the guest's tmpfs.
FST=/tmp/fstests
if [ ! -d "$FST" ]; then
  mkdir -p "$FST"
  tar -C "$FST" -xf "$FSTTAR" || { echo "fstests-guest: cannot unpack $FSTTAR"; exit 1; }
fi
# ferrofs's cases in common/rc's mkfs helpers (see the script).
python3 "$SRC/tests/fstests-rc.py" "$FST/common/rc"

# The users fstests needs, in copies of /etc's files (the root is read-only).
for f in passwd group shadow; do
  [ -f /etc/$f ] || continue
  cp /etc/$f /tmp/etc-$f
done
n=3001
for u in fsgqa fsgqa2 123456-fsgqa; do
  grep -q "^$u:" /tmp/etc-passwd || {
    echo "$u:x:$n:$n::/tmp:/bin/bash" >> /tmp/etc-passwd
    echo "$u:x:$n:" >> /tmp/etc-group
    [ -f /tmp/etc-shadow ] && echo "$u:*:19000:0:99999:7:::" >> /tmp/etc-shadow
  }
  n=$((n + 1))
done
for f in passwd group shadow; do
  [ -f /tmp/etc-$f ] && mount --bind /tmp/etc-$f /etc/$f
done

# mkfs -t ferrofs and fsck -t ferrofs find their helpers on PATH.
mkdir -p /tmp/fsbin
ln -sf "$BIN/mkfs-ferrofs" /tmp/fsbin/mkfs.ferrofs
ln -sf "$BIN/fsck-ferrofs" /tmp/fsbin/fsck.ferrofs
export PATH=/tmp/fsbin:$PATH
load_module

umount /mnt/test /mnt/scratch 2>/dev/null
mkdir -p /mnt/test /mnt/scratch
for fs in $FSTYPS; do
  mkfs_opts=
  case $fs in
    ferrofs) mkfs -t ferrofs -f -q "$DEV" ;;
    ext4) mkfs.ext4 -F -q "$DEV" ;;
    xfs) mkfs_opts="-m reflink=0"; mkfs.xfs -f -q $mkfs_opts "$DEV" ;;
  esac
  cat > "$FST/local.config" <<EOF
export FSTYP=$fs
export TEST_DEV=$DEV
export TEST_DIR=/mnt/test
export SCRATCH_DEV=$DEV2
export SCRATCH_MNT=/mnt/scratch
export MOUNT_OPTIONS="-o dax"
export TEST_FS_MOUNT_OPTS="-o dax"
export MKFS_OPTIONS="$mkfs_opts"
export RESULT_BASE=$OUT/$fs
EOF
  mkdir -p "$OUT/$fs"
  for t in $TESTS; do
    grep -q "^$fs $t " "$OUT/status" && continue
    echo "$fs $t" > "$OUT/current"
    sync
    t0=$SECONDS
    (cd "$FST" && timeout -k 30 "$per_test" ./check "$t") > "$OUT/$fs/check-$(tr / - <<< "$t").log" 2>&1
    rc=$?
    secs=$((SECONDS - t0))
    base=$OUT/$fs/$t
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      st=hung
    elif [ -f "$base.notrun" ]; then
      st=notrun
    elif [ -f "$base.out.bad" ] || [ -f "$base.dmesg" ] || [ "$rc" != 0 ] ||
      grep -q '^Failures:' "$OUT/$fs/check-$(tr / - <<< "$t").log"; then
      st=fail
    else
      st=pass
    fi
    # fstests' own time for the test (without check's set-up), when it has one.
    own=$(awk -v t="$t" '$1 == t { print $2 }' "$OUT/$fs/check.time" 2>/dev/null | tail -n 1)
    echo "$fs $t $st $secs ${own:-}" >> "$OUT/status"
    : > "$OUT/current"
    sync
    printf '%-8s %-13s %-7s %4d s%s\n' "$fs" "$t" "$st" "$secs" \
      "$([ "$st" = notrun ] && printf ' (%s)' "$(head -c 100 "$base.notrun")")"
    # A hung check leaves mounts behind.
    if [ "$st" = hung ]; then
      umount -l /mnt/scratch 2>/dev/null; umount -l /mnt/test 2>/dev/null
    fi
  done
  umount /mnt/scratch 2>/dev/null
  umount /mnt/test 2>/dev/null
done
exit 0
