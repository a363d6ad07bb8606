#!/bin/bash
# PMDK on ferrofs: libpmem (pmem_map_file must see real pmem, i.e. map the
# file MAP_SYNC), libpmemobj (transactions, pmemobj_open's bad-block check
# through FIEMAP, pmempool check) and fio's libpmem engine (which refuses a
# file that is not pmem). Each line has an ext4 -o dax reference on
# /dev/pmem1 in the same boot; a reference that fails is a SKIP of that line,
# not a failure of ferrofs.
#
# The client, tests/pmdk/pmdk_client.c, is built on the host by
# scripts/build.sh into $BIN/pmdk-client.
source "$(dirname "$0")/lib.sh"
load_module

PC=$BIN/pmdk-client
EXT=/mnt/ext4dax
MAP_MIB=16   # pmem_map_file round trip
NOBJ=3000    # libpmemobj objects
FIO_MIB=64
FIO_JOB="--name=pmdk --size=${FIO_MIB}M --bs=4k --rw=randwrite --iodepth=1
  --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --output-format=json"
# Nothing may make libpmem claim pmem it did not find.
unset PMEM_IS_PMEM_FORCE PMEMOBJ_CONF

have_client() {
  [ -x "$PC" ] || skip "no $PC: build it on the host with scripts/build.sh (make all)"
}
have_fio() {
  command -v fio >/dev/null || skip "no fio (scripts/setup.sh installs it)"
  fio --enghelp 2>&1 | grep -qw libpmem || skip "this fio has no libpmem engine"
}
# tt NAME FUNC: t, then the case's wall time as a diagnostic.
tt() {
  local s=$SECONDS
  t "$@"
  echo "# $1: $((SECONDS - s)) s"
}

ext4_dax_mount() {
  mountpoint -q $EXT && umount $EXT
  mkdir -p $EXT
  mkfs.ext4 -q -F $DEV2 > /tmp/ext4.err 2>&1 || skip "reference: mkfs.ext4 $DEV2 failed: $(tail -n 1 /tmp/ext4.err)"
  mount -t ext4 -o dax $DEV2 $EXT 2> /tmp/ext4.err || skip "reference: mount -o dax of ext4 failed: $(tail -n 1 /tmp/ext4.err)"
}
ext4_remount() { umount $EXT && mount -t ext4 -o dax $DEV2 $EXT; }
ferro_remount() { remount; }
ferro_fsck() {
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV || fail "fsck-ferrofs exit $?"
}
# reference FUNC ARGS...: run a case body on ext4-dax; its failure is a SKIP
# with the last lines of its output as the reason.
reference() {
  local out rc
  set +e
  out=$( (set -e; "$@") 2>&1 ); rc=$?
  set -e
  printf '%s\n' "$out"
  [ $rc = 0 ] || skip "reference failed on ext4-dax: $(printf '%s\n' "$out" | grep -v '^$' | tail -n 2 | tr '\n' ' ')"
}

# --- 1. libpmem: pmem_map_file, pmem_persist, read back after a remount ---

# map_roundtrip DIR REMOUNT: pmdk-client map asserts is_pmem == 1 and a
# MAP_SYNC mapping ("sf" in smaps), writes a pattern (stores + pmem_persist,
# then pmem_memcpy_persist); after umount and mount it must read back.
map_roundtrip() {
  local f=$1/pmem_map.dat
  "$PC" map "$f" $MAP_MIB || fail "pmdk-client map on $1 failed (above)"
  $2 || fail "umount and mount of $1 failed"
  "$PC" verify-map "$f" $MAP_MIB || fail "after umount and mount: what pmem_persist wrote does not read back (above)"
}

pmem_map_file_is_pmem_and_persists_on_ferrofs() {
  have_client
  fresh_mount
  local m0 w0 m1 w1
  m0=$(counter sync_maps 2>/dev/null) || m0=none
  w0=$(counter sync_write_faults 2>/dev/null) || w0=none
  "$PC" map $MNT/pmem_map.dat $MAP_MIB || fail "pmdk-client map on ferrofs failed (above)"
  [ "$m0" != none ] && [ "$w0" != none ] || fail "no $STATS/sync_maps or sync_write_faults counter"
  m1=$(counter sync_maps)
  w1=$(counter sync_write_faults)
  echo "sync_maps $m0 -> $m1, sync_write_faults $w0 -> $w1"
  [ "$m1" -gt "$m0" ] || fail "sync_maps stayed at $m0: ferrofs did not set up the MAP_SYNC mapping libpmem asked for"
  [ "$w1" -gt "$w0" ] || fail "sync_write_faults stayed at $w0 after writing $MAP_MIB MiB through a MAP_SYNC mapping"
  remount
  "$PC" verify-map $MNT/pmem_map.dat $MAP_MIB || fail "after umount and mount: what pmem_persist wrote does not read back (above)"
  ferro_fsck
}
tt pmem_map_file_is_pmem_and_persists_on_ferrofs pmem_map_file_is_pmem_and_persists_on_ferrofs

reference_pmem_map_file_on_ext4_dax() {
  have_client
  ext4_dax_mount
  reference map_roundtrip $EXT ext4_remount
  umount $EXT
}
tt reference_pmem_map_file_on_ext4_dax reference_pmem_map_file_on_ext4_dax

# --- 2. libpmemobj: transactions, reopen (bad-block check), pmempool check ---

# pmemobj_roundtrip DIR REMOUNT: a 32 MiB pool, NOBJ objects allocated and
# then updated in transactions (10 per transaction), one aborted transaction
# that must leave no trace; pmemobj_open + verify of every object right after
# the close and again after umount and mount; then pmempool check -v (with
# the pool's CHECK_BAD_BLOCKS feature on, so it checks bad blocks too).
pmemobj_roundtrip() {
  local pool=$1/pool.obj out rc=0
  "$PC" obj-create "$pool" $NOBJ || fail "pmdk-client obj-create on $1 failed (above)"
  "$PC" obj-verify "$pool" $NOBJ || fail "reopen and verify right after the close failed (above)"
  $2 || fail "umount and mount of $1 failed"
  "$PC" obj-verify "$pool" $NOBJ || fail "reopen and verify after umount and mount failed (above)"
  # pmempool check and pmemobj_open check bad blocks only in a pool with
  # this feature (on by default at create when PMDK is built with ndctl, as
  # Debian's is).
  assert_eq 1 "$(pmempool feature --query CHECK_BAD_BLOCKS "$pool" 2>&1)" "pmempool feature --query CHECK_BAD_BLOCKS"
  out=$(pmempool check -v "$pool" 2>&1) || rc=$?
  printf '%s\n' "$out"
  [ $rc = 0 ] || fail "pmempool check -v $pool: exit $rc"
  if grep -qi 'not supported' <<< "$out"; then
    fail "pmempool check -v: $(grep -i 'not supported' <<< "$out" | head -n 1)"
  fi
  grep -qx "$pool: consistent" <<< "$out" || fail "pmempool check -v did not report '$pool: consistent'"
}

pmemobj_transactions_reopen_and_pmempool_check_on_ferrofs() {
  have_client
  command -v pmempool >/dev/null || skip "no pmempool (pmdk-tools; scripts/setup.sh installs it)"
  fresh_mount
  pmemobj_roundtrip $MNT ferro_remount
  ferro_fsck
}
tt pmemobj_transactions_reopen_and_pmempool_check_on_ferrofs pmemobj_transactions_reopen_and_pmempool_check_on_ferrofs

reference_pmemobj_on_ext4_dax() {
  have_client
  command -v pmempool >/dev/null || skip "no pmempool (pmdk-tools; scripts/setup.sh installs it)"
  ext4_dax_mount
  reference pmemobj_roundtrip $EXT ext4_remount
  umount $EXT
}
tt reference_pmemobj_on_ext4_dax reference_pmemobj_on_ext4_dax

# --- 3. fio's libpmem engine: random 4 KiB writes, crc32c verify ---

# fio_libpmem DIR REMOUNT TAG: the libpmem job must run and verify with no
# error; after umount and mount the same job's verify_only pass (psync: the
# libpmem engine would prepopulate, i.e. overwrite, the file first) must
# pass too; and, to show the checks catch a bad block, it must fail once one
# block is overwritten. IOPS go to /tmp/fio-TAG.iops.
fio_libpmem() {
  local f=$1/fio.dat j=/tmp/fio-$3 rc=0 err wb rb
  rm -f "/tmp/fio-$3.iops"
  run_fio "$j" --ioengine=libpmem --filename="$f" || rc=$?
  cat "$j.msg"
  [ $rc = 0 ] || fail "fio (libpmem) exit $rc, job error $(jq '.jobs[0].error' "$j.json" 2>&1)"
  if grep -qi verify "$j.msg"; then fail "fio (libpmem) reported verify errors (above)"; fi
  err=$(jq '.jobs[0].error' "$j.json") || fail "fio's json output does not parse: $(head -c 300 "$j.json")"
  wb=$(jq '.jobs[0].write.io_bytes' "$j.json")
  rb=$(jq '.jobs[0].read.io_bytes' "$j.json")
  assert_eq 0 "$err" "fio job error"
  assert_eq $((FIO_MIB << 20)) "$wb" "bytes fio wrote"
  assert_eq $((FIO_MIB << 20)) "$rb" "bytes fio's verify phase read back"
  jq -r '.jobs[0] | "\(.write.iops | floor) write IOPS (4 KiB randwrite), \(.read.iops | floor) verify-read IOPS"' \
    "$j.json" > "/tmp/fio-$3.iops"
  cat "/tmp/fio-$3.iops"

  $2 || fail "umount and mount of $1 failed"
  rc=0
  run_fio "$j.2" --ioengine=psync --verify_only=1 --filename="$f" || rc=$?
  cat "$j.2.msg"
  [ $rc = 0 ] || fail "after umount and mount, fio's verify of the libpmem writes failed: exit $rc (above)"
  assert_eq $((FIO_MIB << 20)) "$(jq '.jobs[0].read.io_bytes' "$j.2.json")" "bytes verified after umount and mount"

  dd if=/dev/urandom of="$f" bs=4k seek=1000 count=1 conv=notrunc status=none || fail "dd into $f"
  rc=0
  run_fio "$j.3" --ioengine=psync --verify_only=1 --filename="$f" || rc=$?
  [ $rc != 0 ] || fail "fio's verify passed over a block overwritten with random bytes: these checks would miss errors"
  grep -q '^verify: bad' "$j.3.msg" || fail "fio failed on the overwritten block without a verify error: $(cat "$j.3.msg")"
  echo "the overwritten block is caught: $(grep -m 1 '^verify: bad' "$j.3.msg")"
}

# run_fio OUT ARGS...: FIO_JOB plus ARGS, from /tmp (fio may write state
# files to its working directory). OUT.json gets the json report, OUT.msg
# fio's messages: stderr and whatever it printed on stdout before the json
# (its error lines go there when stdout is not a terminal).
run_fio() {
  local o=$1 rc=0; shift
  # shellcheck disable=SC2086
  (cd /tmp && fio $FIO_JOB "$@" > "$o.out" 2> "$o.msg") || rc=$?
  sed -n '/^{/,$p' "$o.out" > "$o.json"
  sed -n '/^{/q;p' "$o.out" >> "$o.msg"
  return $rc
}

fio_libpmem_randwrite_verify_on_ferrofs() {
  have_fio
  fresh_mount
  fio_libpmem $MNT ferro_remount ferrofs
  ferro_fsck
}
tt fio_libpmem_randwrite_verify_on_ferrofs fio_libpmem_randwrite_verify_on_ferrofs
[ -f /tmp/fio-ferrofs.iops ] && echo "# fio libpmem on ferrofs: $(cat /tmp/fio-ferrofs.iops)"

reference_fio_libpmem_on_ext4_dax() {
  have_fio
  ext4_dax_mount
  reference fio_libpmem $EXT ext4_remount ext4-dax
  umount $EXT
}
tt reference_fio_libpmem_on_ext4_dax reference_fio_libpmem_on_ext4_dax
[ -f /tmp/fio-ext4-dax.iops ] && echo "# fio libpmem on ext4-dax: $(cat /tmp/fio-ext4-dax.iops)"
true
