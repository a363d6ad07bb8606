#!/bin/bash
# Guest side of `make bench` (scripts/bench.sh). Not a test: tests/run.sh runs
# only NN-*.sh. On /dev/pmem0, in turn: format ferrofs, ext4 and xfs, mount
# each with DAX, run ferrobench on it, unmount. Results in /mnt/out/bench/:
# <fs>.json (every sample), <fs>.txt (ferrobench's summary), <fs>.mount
# (the /proc/mounts line), ferrofs-counters.txt, guest.txt.
#
#   bash tests/bench-guest.sh [FERROBENCH OPTIONS...] [ferrofs] [ext4] [xfs]
#
# Options (--quick, --cases LIST) go to `ferrobench run`; no file system
# named means all three.
source "$(dirname "$0")/lib.sh"
FB=$BIN/ferrobench
OUT=/mnt/out/bench
mkdir -p "$OUT"

opts=() fss=()
while (($#)); do
  case $1 in
    --cases) opts+=("$1" "$2"); shift 2 ;;
    -*) opts+=("$1"); shift ;;
    *) fss+=("$1"); shift ;;
  esac
done
((${#fss[@]})) || fss=(ferrofs ext4 xfs)

{
  echo "kernel: $(uname -r)"
  echo "cpus: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo
  echo "flush instructions: $(grep -m1 '^flags' /proc/cpuinfo | grep -ow 'clwb\|clflushopt\|clflush' | tr '\n' ' ')"
  grep -E 'MemTotal' /proc/meminfo
  echo "pmem0: $(($(blockdev --getsize64 $DEV) >> 20)) MiB"
} > "$OUT/guest.txt"

fmt_mount() {  # $1: fs name
  mountpoint -q $MNT && umount $MNT
  mkdir -p $MNT
  case $1 in
    ferrofs)
      load_module
      "$MKFS" -q -f $DEV
      mount -t ferrofs -o dax $DEV $MNT ;;
    ext4)
      mkfs.ext4 -F -q $DEV
      mount -t ext4 -o dax $DEV $MNT ;;
    xfs)
      mkfs.xfs -f -q -m reflink=0 $DEV
      mount -t xfs -o dax $DEV $MNT ;;
    *) echo "bench-guest: unknown file system $1"; return 1 ;;
  esac
}

rc=0
for fs in "${fss[@]}"; do
  echo "== $fs: format $DEV, mount -o dax"
  if ! fmt_mount "$fs"; then
    echo "bench-guest: $fs: format or mount failed"; rc=1; continue
  fi
  grep " $MNT " /proc/mounts | tee "$OUT/$fs.mount"
  if ! grep " $MNT " /proc/mounts | grep -qw 'dax\|dax=always'; then
    # ferrofs is DAX only and does not list the option; the others must.
    [ "$fs" = ferrofs ] || { echo "bench-guest: $fs is not mounted with dax"; rc=1; }
  fi
  mkdir -p $MNT/bench
  start=$SECONDS
  if ! "$FB" run --dir $MNT/bench --fs "$fs" --json "$OUT/$fs.json" "${opts[@]}" > "$OUT/$fs.txt"; then
    echo "bench-guest: ferrobench failed on $fs"; rc=1
  fi
  echo "== $fs: $((SECONDS - start)) s"
  cat "$OUT/$fs.txt"
  if [ "$fs" = ferrofs ]; then
    # Counters only (the trace files are write-only or need -o trace).
    for c in "$STATS"/*; do
      v=$(cat "$c" 2>/dev/null) || continue
      printf '%s %s\n' "$(basename "$c")" "$v"
    done > "$OUT/ferrofs-counters.txt"
  fi
  umount $MNT || rc=1
done
exit $rc
