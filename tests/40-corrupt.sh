#!/bin/bash
# Damaged images: mounting and walking them fails cleanly (an error, never an
# oops, WARN or hang; make check scans the kernel log after the run).
# FERRO_CORRUPT_ROUNDS sets the number of images (default 8).
source "$(dirname "$0")/lib.sh"
load_module
rounds=${FERRO_CORRUPT_ROUNDS:-8}

populate() {
  fresh_mount
  mkdir -p $MNT/d1/d2 $MNT/d3
  for i in 1 2 3 4 5 6; do echo "file $i" > $MNT/d1/f$i; done
  "$FT" fill $MNT/d1/d2/big 5 200000
  "$FT" mmap-fill $MNT/d3/mapped 6 20000 --sync=msync
  ln -s ../d1/f1 $MNT/d3/link
  umount $MNT
}

walk() {  # everything a user might do on a damaged filesystem; errors are fine
  timeout 60 bash -c "
    ls -laR $MNT >/dev/null 2>&1
    find $MNT -type f -exec cat {} + >/dev/null 2>&1
    find $MNT -type l -exec readlink {} + >/dev/null 2>&1
    echo new > $MNT/d1/new 2>/dev/null
    mkdir $MNT/d3/newdir 2>/dev/null
    mv $MNT/d1/f2 $MNT/d3/ 2>/dev/null
    rm -f $MNT/d1/f3 2>/dev/null
    truncate -s 1000 $MNT/d1/d2/big 2>/dev/null
    python3 -c 'import mmap,os
fd=os.open(\"$MNT/d3/mapped\", os.O_RDWR); m=mmap.mmap(fd, 4096); m[0:4]=b\"abcd\"; m.flush()' 2>/dev/null
    sync
    df $MNT >/dev/null 2>&1
  " || [ $? -ne 124 ] || fail "walking the damaged filesystem hung"
}

damaged_images_mount_or_fail_cleanly() {
  local seed=${FERRO_CORRUPT_SEED:-$RANDOM} mounted=0 refused=0
  echo "seed $seed (FERRO_CORRUPT_SEED to repeat)"
  RANDOM=$seed
  populate
  # The image's first 18 MiB hold all its metadata and the files' data:
  # restoring them gives a fresh copy of the populated image each round.
  dd if=$DEV of=/tmp/golden.img bs=1M count=18 status=none
  for r in $(seq 1 $rounds); do
    dd if=/tmp/golden.img of=$DEV bs=1M conv=notrunc status=none
    # Damage 1-8 bytes in one region of the geometry mkfs gives a 1 GiB
    # device (bitmap at block 65, inode table at 73, data at 4169):
    # superblock, bitmap, inode table
    # (the used part), root and other directory blocks, journal.
    local n=$((RANDOM % 8 + 1)) region=$((RANDOM % 5)) off
    for _ in $(seq 1 $n); do
      case $region in
        0) off=$((RANDOM % 512)) ;;                              # superblock
        1) off=$(( (65 * 4096) + RANDOM % 4096 )) ;;              # bitmap
        2) off=$(( (73 * 4096) + RANDOM % (16 * 256) )) ;;        # first 16 inodes
        3) off=$(( (4169 * 4096) + RANDOM % (8 * 4096) )) ;;      # first data blocks (dirs)
        4) off=$(( 4096 + RANDOM % (64 * 4096) )) ;;              # journal
      esac
      "$FT" flipbyte $DEV $off
    done
    if mount -t ferrofs -o dax $DEV $MNT 2>/dev/null; then
      mounted=$((mounted + 1))
      walk
      umount $MNT || fail "round $r: umount failed"
    else
      refused=$((refused + 1))
    fi
  done
  echo "$rounds damaged images: $mounted mounted and walked, $refused refused"
  fresh_mount && echo ok > $MNT/after && umount $MNT
}

t damaged_images_mount_or_fail_cleanly damaged_images_mount_or_fail_cleanly
