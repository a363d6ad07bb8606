#!/bin/bash
# MAP_SYNC, FIEMAP and STATX_ATTR_DAX through the tools users run:
# xfs_io (mmap -S, mwrite, fiemap, statx) and filefrag. The FIEMAP
# extents are checked three ways: against the blocks the file was written
# at, between the two tools, and against the bytes at those physical
# offsets of /dev/pmem0 (read with O_DIRECT while mounted).
#
# The ferrotest MAP_SYNC/FIEMAP/statx/long-term-pin cases run on ferrofs in
# 20-dax's `ferrotest run`; here they run again on ext4-dax (/dev/pmem1) as
# the reference, a failing reference line being a SKIP.
source "$(dirname "$0")/lib.sh"
load_module

EXT=/mnt/ext4dax
MS_CASES="map_sync_mapping_is_accepted_and_faults_are_synchronous statx_reports_dax
  fiemap_maps_file_offsets_to_device_offsets longterm_pin_of_a_dax_mapping_is_refused"

have() { command -v "$1" > /dev/null || skip "no $1 (apt-get install ${2:-$1})"; }

# A file with data at 4 KiB blocks 0-2, 10 and 300, a distinct byte each.
make_layout() {
  local f=$1
  rm -f "$f"
  xfs_io -f -c "pwrite -q -S 0x11 0 4k" -c "pwrite -q -S 0x12 4k 4k" -c "pwrite -q -S 0x13 8k 4k" \
    -c "pwrite -q -S 0x1a 40k 4k" -c "pwrite -q -S 0x2c $((300 * 4096)) 4k" -c fsync "$f"
}

fiemap_tools_show_the_extents() {
  have xfs_io xfsprogs
  have filefrag e2fsprogs
  fresh_mount
  local f=$MNT/layout
  make_layout $f
  xfs_io -c "fiemap -v" $f | tee /tmp/fiemap.txt
  # EXT: [start..end]: phys_start..phys_end total flags (512-byte sectors).
  local blocks="" last_flags="" n=0
  while read -r _ range phys total flags; do
    [ "$phys" = hole ] && continue
    local lo=${range#[}; lo=${lo%%..*}; local hi=${range#*..}; hi=${hi%]:}
    local plo=${phys%%..*}
    ((lo % 8 == 0 && (hi + 1) % 8 == 0 && plo % 8 == 0)) || fail "extent $range $phys not in whole 4 KiB blocks"
    for ((s = lo; s <= hi; s += 8)); do
      blocks+="$((s / 8)) "
      # The bytes at the physical offset are the file's.
      local at=$((plo + s - lo))
      cmp <(dd if=$DEV bs=512 skip=$at count=8 iflag=direct status=none) \
        <(dd if=$f bs=512 skip=$s count=8 status=none) ||
        fail "block $((s / 8)): $DEV at sector $at does not hold the file's bytes"
    done
    last_flags=$flags; n=$((n + 1))
  done < <(grep -E '^ +[0-9]+: \[' /tmp/fiemap.txt)
  assert_eq "0 1 2 10 300 " "$blocks" "blocks xfs_io fiemap reports"
  (( last_flags & 1 )) || fail "last extent's flags $last_flags lack FIEMAP_EXTENT_LAST"
  filefrag -v $f | tee /tmp/filefrag.txt
  local fblocks="" lastline
  while read -r _ llo lhi plo _ _; do
    llo=${llo%..}; lhi=${lhi%:}; plo=${plo%..}
    for ((b = llo; b <= lhi; b++)); do fblocks+="$b "; done
    # Same physical block as xfs_io (sectors / 8) for the extent's start.
    grep -qE "^ +[0-9]+: \[$((llo * 8))\.\.[0-9]+\]: +$((plo * 8))\.\." /tmp/fiemap.txt ||
      fail "filefrag's extent at block $llo (physical $plo) is not xfs_io's"
  done < <(grep -E '^ +[0-9]+: +[0-9]+\.\. +[0-9]+:' /tmp/filefrag.txt)
  assert_eq "0 1 2 10 300 " "$fblocks" "blocks filefrag reports"
  lastline=$(grep -E '^ +[0-9]+: +[0-9]+\.\.' /tmp/filefrag.txt | tail -n 1)
  [[ $lastline == *last* ]] || fail "filefrag's last extent is not flagged last: $lastline"
  # A hole punched through the middle extent shows up as a gap.
  xfs_io -c "fpunch 4k 4k" -c "fiemap" $f | tee /tmp/fiemap2.txt
  grep -qE '\[8\.\.15\]: hole' /tmp/fiemap2.txt || fail "punched block 1 is not a hole in fiemap"
}
t fiemap_tools_show_the_extents fiemap_tools_show_the_extents

xfs_io_map_sync_stores_and_statx_dax() {
  have xfs_io xfsprogs
  fresh_mount
  local f=$MNT/ms
  truncate -s 64k $f
  local m0; m0=$(counter sync_maps); local w0; w0=$(counter sync_write_faults)
  xfs_io -c "mmap -S -rw 0 64k" -c "mwrite -S 0x5c 0 64k" -c "munmap" $f ||
    fail "xfs_io mmap -S (MAP_SHARED_VALIDATE|MAP_SYNC) + mwrite failed"
  assert_eq 1 $(( $(counter sync_maps) - m0 )) "sync_maps after one mmap -S"
  assert_eq 16 $(( $(counter sync_write_faults) - w0 )) "sync_write_faults for 16 pages"
  cmp $f <(head -c 65536 /dev/zero | tr '\0' '\134') || fail "bytes stored through MAP_SYNC read back wrong"
  local a; a=$(xfs_io -c "statx -r" $f | sed -n 's/^stat.attributes = //p')
  (( a & 0x200000 )) || fail "statx attributes $a lack STATX_ATTR_DAX (0x200000)"
  local am; am=$(xfs_io -c "statx -r" $f | sed -n 's/^stat.attributes_mask = //p')
  (( am & 0x200000 )) || fail "statx attributes_mask $am lacks STATX_ATTR_DAX"
  remount
  cmp $f <(head -c 65536 /dev/zero | tr '\0' '\134') || fail "MAP_SYNC bytes after umount and mount"
}
t xfs_io_map_sync_stores_and_statx_dax xfs_io_map_sync_stores_and_statx_dax
mountpoint -q $MNT && umount $MNT

ext4_dax_mount() {
  mountpoint -q $EXT && umount $EXT
  mkdir -p $EXT
  mkfs.ext4 -q -F $DEV2 > /tmp/ext4.err 2>&1 || skip "reference: mkfs.ext4 $DEV2 failed: $(tail -n 1 /tmp/ext4.err)"
  mount -t ext4 -o dax $DEV2 $EXT 2> /tmp/ext4.err || skip "reference: mount -o dax of ext4 failed: $(tail -n 1 /tmp/ext4.err)"
}
if (ext4_dax_mount) > /tmp/ext4.why 2>&1; then
  "$FT" run --dir $EXT --no-counters $MS_CASES 2>&1 |
    sed -E -e 's/^ok - (.*)$/ok - ext4_dax_reference_\1/' \
      -e 's/^not ok - (.*)$/ok - ext4_dax_reference_\1 # SKIP the reference failed on ext4-dax (diagnostics above)/'
  umount $EXT
else
  for c in $MS_CASES; do echo "ok - ext4_dax_reference_$c # SKIP $(tail -n 1 /tmp/ext4.why)"; done
fi
