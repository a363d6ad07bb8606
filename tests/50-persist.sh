#!/bin/bash
# Persistence-order checker, guest half: a 16 MiB ferrofs on pmem1 mounted
# with `-o trace=MiB` runs the deterministic crashwl workload, with a marker
# around each operation; the trace and the image from before go to
# /mnt/out/persist/ for the host half (ferrocrash, run by scripts/check.sh),
# which builds crash states from them. Here: the fsync flush assertion and
# the trace option.
source "$(dirname "$0")/lib.sh"
load_module
P=/mnt/out/persist
PM=/mnt/persist
TRACE=/sys/fs/ferrofs/pmem1
SEED=${FERRO_PERSIST_SEED:-20261125}
OPS=${FERRO_PERSIST_OPS:-300}
P2=/mnt/out/persist2
OPS2=${FERRO_PERSIST_OPS2:-200}
mkdir -p $PM
unmount() { if mountpoint -q $PM; then umount $PM; fi; }

trace_option_is_checked() {
  unmount
  "$MKFS" -q -f $DEV2
  for bad in trace=0 trace=abc trace=2000 trace=; do
    expect_fail mount -t ferrofs -o dax,$bad $DEV2 $PM > /dev/null
  done
  mount -t ferrofs -o dax $DEV2 $PM
  # Without the option the files exist but say so.
  if cat $TRACE/trace > /dev/null 2>&1; then fail "trace readable without -o trace"; fi
  umount $PM
}
# A fresh 16 MiB ferrofs on pmem1, its image kept in $1/pre.img for the
# host half, mounted on $PM with a trace of $2 MiB.
traced_fresh_mount() {
  unmount
  rm -rf "$1" && mkdir -p "$1"
  truncate -s 16M /tmp/pre.img
  "$MKFS" -q -f /tmp/pre.img
  cp /tmp/pre.img "$1/pre.img"
  dd if=/tmp/pre.img of=$DEV2 bs=1M conv=fsync status=none
  rm -f /tmp/pre.img
  mount -t ferrofs -o dax,trace=$2 $DEV2 $PM
}
workload_under_trace() {
  traced_fresh_mount $P 128
  "$FT" crash-workload --seed $SEED --ops $OPS --dir $PM --mark $TRACE/trace_mark
  cat $TRACE/trace > $P/trace.bin
  echo "$SEED $OPS" > $P/params
  echo "trace: $(stat -c %s $P/trace.bin) bytes"
  assert_eq 0 "$(cat $TRACE/persist_violations)" "lines fsync or a MAP_SYNC fault left unflushed or unfenced"
  # The workload's MapWrite steps went through MAP_SYNC mappings.
  [ "$(cat $TRACE/sync_write_faults)" -gt 0 ] || fail "no MAP_SYNC write faults in the workload"
  # Its 2 MiB MapWrite step allocated a whole extent and mapped it with a PMD.
  [ "$(cat $TRACE/pmd_faults)" -gt 0 ] || fail "no PMD fault in the workload"
  umount $PM
  "$BIN/fsck-ferrofs" -n $DEV2 || fail "fsck after the traced workload: exit $?"
}
# The same with two workload threads at once (each its own directory and
# seed, its own region of one shared file and its own names in one shared
# directory: `ferrotest crash-workload --threads 2`), so that crash states
# hold transactions of two journal areas in flight together, also on one
# inode, and two threads' changes to one directory. The trace records
# which thread issued each write-back and fence; ferrocrash --threads 2
# (scripts/check.sh) checks each thread's directory against that thread's
# model. fsync's flush assertion is not asked here: it does not tell
# threads apart (src/sys/trace.rs).
workload_of_two_threads_under_trace() {
  traced_fresh_mount $P2 64
  local o0; o0=$(cat $TRACE/tx_overlapped)
  # Every transaction sleeps 500 us before its commit, so the other thread's
  # transactions run beside it often, on the shared file too (where only
  # inode ownership keeps them apart), not only when the scheduler happens
  # to interleave them.
  echo 500 > $TRACE/trace_tx_delay
  "$FT" crash-workload --seed $SEED --ops $OPS2 --threads 2 --dir $PM --mark $TRACE/trace_mark
  echo 0 > $TRACE/trace_tx_delay
  cat $TRACE/trace > $P2/trace.bin
  echo "$SEED $OPS2 2" > $P2/params
  echo "trace: $(stat -c %s $P2/trace.bin) bytes, $(( $(cat $TRACE/tx_overlapped) - o0 )) transactions beside another"
  [ "$(cat $TRACE/tx_overlapped)" -gt "$o0" ] || fail "no two transactions were in flight at once"
  umount $PM
  "$BIN/fsck-ferrofs" -n $DEV2 || fail "fsck after the two-thread traced workload: exit $?"
}
map_sync_faults_leave_no_metadata_unflushed() {
  # The MAP_SYNC assertion (src/dax.rs, check_sync_fault): after every write
  # fault of a MAP_SYNC mapping, under the journal lock, no line of the
  # metadata areas, of the page's indirect blocks or of a block the fault
  # allocated may be unflushed or unfenced. Holes in new files (direct and
  # indirect blocks), a file extended by ftruncate, and stores into blocks
  # that exist already.
  unmount
  "$MKFS" -q -f $DEV2
  mount -t ferrofs -o dax,trace=64 $DEV2 $PM
  local f0; f0=$(cat $TRACE/sync_write_faults)
  "$FT" mmap-fill $PM/s1 21 5000 --sync=mapsync
  "$FT" mmap-fill $PM/s2 22 700000 --sync=mapsync
  "$FT" mmap-fill $PM/s2 23 900000 --sync=mapsync
  "$FT" fill $PM/s3 24 100000
  "$FT" mmap-fill $PM/s3 25 100000 --sync=mapsync
  local faults=$(( $(cat $TRACE/sync_write_faults) - f0 ))
  # 2 + 171 + 220 + 25 pages stored to (each a first store: the file is
  # truncated and refilled, so every page faults once).
  [ "$faults" -ge 418 ] || fail "only $faults MAP_SYNC write faults for 418 pages"
  assert_eq 0 "$(cat $TRACE/persist_violations)" "lines a MAP_SYNC write fault left unflushed or unfenced"
  "$FT" verify $PM/s2 23 900000
  "$FT" verify $PM/s3 25 100000
  umount $PM
  mount -t ferrofs -o dax $DEV2 $PM
  "$FT" verify $PM/s1 21 5000
  "$FT" verify $PM/s2 23 900000
  umount $PM
}
pmd_mappings_persist_and_leave_no_metadata_unflushed() {
  # Files of whole 2 MiB extents written through 2 MiB-aligned mappings:
  # write faults into 2 MiB holes allocate a whole extent and map it with
  # one PMD. MAP_SYNC ones under the trace's fault assertion, msync ones
  # through the PMD dirty entries; all read back after umount and mount.
  unmount
  "$MKFS" -q -f $DEV2
  mount -t ferrofs -o dax,trace=64 $DEV2 $PM
  local p0; p0=$(cat $TRACE/pmd_faults)
  "$FT" mmap-fill $PM/h1 41 4194304 --sync=mapsync
  "$FT" mmap-fill $PM/h2 42 8388608 --sync=msync
  "$FT" mmap-fill $PM/h3 43 6291456 --sync=fsync
  local pmd=$(( $(cat $TRACE/pmd_faults) - p0 ))
  [ "$pmd" -ge 9 ] || fail "only $pmd PMD faults for 9 extents of 2 MiB"
  [ "$(cat $TRACE/pmd_entries_flushed)" -ge 7 ] || fail "pmd_entries_flushed $(cat $TRACE/pmd_entries_flushed) < 7"
  assert_eq 0 "$(cat $TRACE/persist_violations)" "lines a PMD fault or fsync left unflushed or unfenced"
  umount $PM
  mount -t ferrofs -o dax $DEV2 $PM
  "$FT" verify $PM/h1 41 4194304
  "$FT" verify $PM/h2 42 8388608
  "$FT" verify $PM/h3 43 6291456
  umount $PM
  "$BIN/fsck-ferrofs" -n $DEV2 || fail "fsck after the PMD files: exit $?"
}
fsync_leaves_no_line_unflushed() {
  # The flush assertion with mmap stores (which the trace cannot see: the
  # lines the XArray said were dirty) and write(2).
  unmount
  "$MKFS" -q -f $DEV2
  mount -t ferrofs -o dax,trace=64 $DEV2 $PM
  "$FT" mmap-fill $PM/m 11 300000 --sync=msync
  "$FT" mmap-fill $PM/m2 12 300000 --sync=fsync
  "$FT" fill $PM/w 13 300000
  assert_eq 0 "$(cat $TRACE/persist_violations)" "lines fsync left unflushed or unfenced"
  umount $PM
}

t trace_option_is_checked trace_option_is_checked
t workload_under_trace workload_under_trace
t workload_of_two_threads_under_trace workload_of_two_threads_under_trace
t fsync_leaves_no_line_unflushed fsync_leaves_no_line_unflushed
t map_sync_faults_leave_no_metadata_unflushed map_sync_faults_leave_no_metadata_unflushed
t pmd_mappings_persist_and_leave_no_metadata_unflushed pmd_mappings_persist_and_leave_no_metadata_unflushed
unmount
