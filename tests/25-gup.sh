#!/bin/bash
# get_user_pages on ferrofs mappings, through a real client: LMDB with 4
# writer processes on one environment (its writer mutex and reader table are
# robust process-shared mutexes in a MAP_SHARED mapping of lock.mdb, so
# contention goes through shared futexes). Each line has an ext4 -o dax
# reference on /dev/pmem1 in the same boot; a reference that fails is a SKIP
# of that line, not a failure of ferrofs.
#
# The ferrotest gup cases (shared futexes, robust mutexes, /proc/self/mem,
# process_vm_readv, O_DIRECT between /dev/pmem1 and a mapping, truncate
# against pinned O_DIRECT reads) run on ferrofs in 20-dax's `ferrotest run`
# (every case, /dev/pmem1 unused then); here they run once more as the
# ext4-dax reference, with the O_DIRECT device /dev/pmem0 (ferrofs unmounted).
source "$(dirname "$0")/lib.sh"
load_module

PY=/usr/bin/python3 # Debian's, with python3-lmdb (the pyenv one first on PATH has none)
LMDB=$SRC/tests/lmdb_writers.py
EXT=/mnt/ext4dax
GUP_CASES="shared_futex_wait_wake_between_processes shared_futex_wait_times_out
  robust_pshared_mutex_under_contention proc_self_mem_reads_and_writes_mapped_bytes
  odirect_read_from_block_device_into_mapping odirect_write_from_mapping_to_block_device
  truncate_racing_odirect_read_stress"

have_lmdb() {
  $PY -c 'import lmdb' 2>/dev/null || skip "no python3-lmdb for $PY (apt-get install python3-lmdb)"
}

# lmdb_run DIR [--writemap]: 4 writers, then verify.
lmdb_run() {
  local d=$1; shift
  mkdir -p "$d"
  $PY "$LMDB" write "$d" --procs 4 --records 500 "$@" || fail "LMDB writers on $d failed (above)"
  $PY "$LMDB" verify "$d" --procs 4 --records 500 || fail "LMDB records in $d after the writers (above)"
}

lmdb_four_writers_on_ferrofs() {
  have_lmdb
  fresh_mount
  lmdb_run $MNT/env
  lmdb_run $MNT/envw --writemap
  # What LMDB committed (fdatasync/msync) is on the medium.
  remount
  $PY "$LMDB" verify $MNT/env --procs 4 --records 500 || fail "after umount and mount"
  $PY "$LMDB" verify $MNT/envw --procs 4 --records 500 || fail "writemap env after umount and mount"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV || fail "fsck-ferrofs exit $?"
}
t lmdb_four_writers_on_ferrofs lmdb_four_writers_on_ferrofs

ext4_dax_mount() {
  mountpoint -q $EXT && umount $EXT
  mkdir -p $EXT
  mkfs.ext4 -q -F $DEV2 > /tmp/ext4.err 2>&1 || skip "reference: mkfs.ext4 $DEV2 failed: $(tail -n 1 /tmp/ext4.err)"
  mount -t ext4 -o dax $DEV2 $EXT 2> /tmp/ext4.err || skip "reference: mount -o dax of ext4 failed: $(tail -n 1 /tmp/ext4.err)"
}

reference_lmdb_four_writers_on_ext4_dax() {
  have_lmdb
  ext4_dax_mount
  local out
  out=$( (lmdb_run $EXT/env && lmdb_run $EXT/envw --writemap) 2>&1) || skip "reference failed on ext4-dax: $(printf '%s\n' "$out" | tail -n 2 | tr '\n' ' ')"
  printf '%s\n' "$out"
  umount $EXT
  mount -t ext4 -o dax $DEV2 $EXT || skip "reference: remount of ext4-dax failed"
  $PY "$LMDB" verify $EXT/env --procs 4 --records 500 || skip "reference failed on ext4-dax after umount and mount"
  umount $EXT
}
t reference_lmdb_four_writers_on_ext4_dax reference_lmdb_four_writers_on_ext4_dax

# The gup cases on ext4-dax (no counters), O_DIRECT against /dev/pmem0. Each
# case is a line ext4_dax_reference_<case>; a failure becomes a SKIP with
# its diagnostics kept.
mountpoint -q $MNT && umount $MNT
if (ext4_dax_mount) > /tmp/ext4.why 2>&1; then
  FERROTEST_ODIRECT_DEV=$DEV "$FT" run --dir $EXT --no-counters $GUP_CASES 2>&1 |
    sed -E -e 's/^ok - (.*)$/ok - ext4_dax_reference_\1/' \
      -e 's/^not ok - (.*)$/ok - ext4_dax_reference_\1 # SKIP the reference failed on ext4-dax (diagnostics above)/'
  umount $EXT
else
  echo "ok - ext4_dax_reference_gup_cases # SKIP $(tail -n 1 /tmp/ext4.why)"
fi
