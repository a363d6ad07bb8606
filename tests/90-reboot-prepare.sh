#!/bin/bash
# Leaves files on pmem1 for tests/reboot-verify.sh, run by `make check` in a
# second boot of the same file-backed guest memory.
source "$(dirname "$0")/lib.sh"
load_module
prepare() {
  fresh_mount $DEV2 /mnt/scratch
  mkdir -p /mnt/scratch/dir/sub
  "$FT" fill /mnt/scratch/dir/written 21 1000000
  "$FT" mmap-fill /mnt/scratch/dir/sub/msynced 22 200000 --sync=msync
  "$FT" mmap-fill /mnt/scratch/unmapped-then-fsynced 23 50000 --sync=none
  ln -s dir/written /mnt/scratch/link
  umount /mnt/scratch
}
t files_for_the_reboot_test_written prepare
