#!/bin/bash
# `make run`: format, mount with DAX, store through a mapping, make it durable
# with msync/fsync, show the counters, remount and read the bytes back.
source "$(dirname "$0")/lib.sh"
set -e
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '   %-18s %s\n' "$1" "$(counter $1)"; }

step "insmod ferrofs.ko"
load_module
grep -w ferrofs /proc/filesystems
step "mkfs.ferrofs $DEV && mount -t ferrofs -o dax $DEV $MNT"
mkdir -p $MNT
"$MKFS" -f -L demo $DEV
mount -t ferrofs -o dax $DEV $MNT
grep " $MNT " /proc/mounts
dmesg | grep 'ferrofs: mounted' | tail -1
df -h $MNT
step "store to 3 of 64 pages through a MAP_SHARED mapping, then msync(MS_SYNC)"
python3 - <<PY
import mmap, os
fd = os.open("$MNT/demo.dat", os.O_CREAT | os.O_RDWR)
os.ftruncate(fd, 64 * 4096)
m = mmap.mmap(fd, 64 * 4096, mmap.MAP_SHARED)
for page in (0, 10, 63):
    m[page * 4096 : page * 4096 + 22] = b"stored through mmap %02d" % page
before = {c: int(open("$STATS/" + c).read()) for c in ("entries_flushed", "lines_flushed")}
m.flush()  # msync(MS_SYNC)
after = {c: int(open("$STATS/" + c).read()) for c in ("entries_flushed", "lines_flushed")}
print("   msync flushed %d dirty pages (%d cache lines) of 64 mapped"
      % (after["entries_flushed"] - before["entries_flushed"], after["lines_flushed"] - before["lines_flushed"]))
m.flush()
again = int(open("$STATS/entries_flushed").read()) - after["entries_flushed"]
print("   a second msync with no new stores flushed %d pages" % again)
m[5 * 4096 : 5 * 4096 + 4] = b"late"
m.close()          # munmap: the dirty mark outlives the mapping
os.fsync(fd)
print("   store, munmap, fsync: flushed %d page" % (int(open("$STATS/entries_flushed").read()) - after["entries_flushed"] - again))
os.close(fd)
PY
step "counters in $STATS"
for c in faults write_faults pfn_mkwrite entries_marked fsync_calls entries_flushed lines_flushed revalidate_drops entries_removed flush_insn; do show $c; done
step "umount, mount again, read the bytes back"
umount $MNT
mount -t ferrofs -o dax $DEV $MNT
for page in 0 10 63; do dd if=$MNT/demo.dat bs=1 skip=$((page * 4096)) count=22 status=none; echo; done
dd if=$MNT/demo.dat bs=1 skip=$((5 * 4096)) count=4 status=none; echo
umount $MNT
step "done"
