#!/bin/bash
# Second boot of `make check`: what 90-reboot-prepare.sh wrote is still there.
cd "$(dirname "$0")"
source ./lib.sh
echo "TAP version 13"
load_module
verify() {
  mkdir -p /mnt/scratch
  mount -t ferrofs -o dax $DEV2 /mnt/scratch
  "$FT" verify /mnt/scratch/dir/written 21 1000000
  "$FT" verify /mnt/scratch/dir/sub/msynced 22 200000
  "$FT" verify /mnt/scratch/unmapped-then-fsynced 23 50000
  assert_eq dir/written "$(readlink /mnt/scratch/link)" "symlink"
  umount /mnt/scratch
}
t files_survive_a_guest_reboot verify | sed 's/^\(not \)\?ok - /\1ok 1 /'
echo "1..1"
