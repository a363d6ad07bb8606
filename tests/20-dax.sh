#!/bin/bash
# DAX mappings, dirty tracking and fsync, checked through the counters
# (the cases live in tools/ftest: ferrotest).
source "$(dirname "$0")/lib.sh"
load_module
fresh_mount
"$FT" run --dir $MNT --stats $STATS
umount $MNT
