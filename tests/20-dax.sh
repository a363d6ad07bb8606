#!/bin/bash
# DAX mappings, dirty tracking and fsync, checked through the counters
# (the cases live in tools/ftest: ferrotest).
source "$(dirname "$0")/lib.sh"
load_module
fresh_mount
"$FT" run --dir $MNT --stats $STATS
umount $MNT

# What the mappings, truncates and punches above left on the medium.
fsck_finds_the_image_consistent_after_the_dax_workload() {
  "$BIN/fsck-ferrofs" -n $DEV || fail "fsck-ferrofs exit $?"
}
t fsck_finds_the_image_consistent_after_the_dax_workload fsck_finds_the_image_consistent_after_the_dax_workload
