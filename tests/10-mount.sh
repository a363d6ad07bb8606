#!/bin/bash
# mkfs and mount: the round trip, and every bad input failing cleanly.
source "$(dirname "$0")/lib.sh"
load_module

mkfs_mount_umount_remount_round_trip() {
  fresh_mount
  echo hello > $MNT/greeting
  remount
  assert_eq hello "$(cat $MNT/greeting)" "content after remount"
  umount $MNT
  mount -t ferrofs $DEV $MNT   # no option: DAX is implied
  assert_eq hello "$(cat $MNT/greeting)" "content after mount without -o dax"
  umount $MNT
}
proc_mounts_shows_dax() {
  fresh_mount
  grep -qE "^$DEV $MNT ferrofs [^ ]*dax" /proc/mounts || fail "$(grep " $MNT " /proc/mounts)"
  umount $MNT
  mount -t ferrofs -o dax=always $DEV $MNT
  umount $MNT
}
mount_log_names_the_flush_instruction() {
  kmsg_mark
  fresh_mount
  kmsg_since | grep -qE 'ferrofs: mounted "?pmem0"?: .* flush with (clwb|clflushopt|clflush)' || fail "$(kmsg_since | grep ferrofs)"
  assert_eq clwb "$(cat $STATS/flush_insn)" "flush_insn (the guest CPU has clwb)"
  umount $MNT
}

# expect_einval DEV OPTS LOGTEXT: mount fails with EINVAL and one ferrofs line
# in the kernel log says why; afterwards a proper mkfs makes DEV mountable.
expect_einval() {
  local dev=$1 opts=$2 why=$3 out
  kmsg_mark
  mkdir -p $MNT
  if out=$(busybox mount -t ferrofs -o "$opts" "$dev" $MNT 2>&1); then
    umount $MNT; fail "mount -o $opts $dev succeeded"
  fi
  echo "$out" | grep -q "Invalid argument" || fail "mount error '$out', expected EINVAL"
  kmsg_since | grep -q "ferrofs: .*$why" || fail "no 'ferrofs: ...$why' in the kernel log: $(kmsg_since | grep -i ferrofs)"
}
still_mountable() {
  [ "$1" = "$DEV" ] || return 0
  fresh_mount && echo ok > $MNT/x && umount $MNT
}
mount_dax_never_fails_with_einval() { "$MKFS" -q -f $DEV; expect_einval $DEV dax=never "dax=never is not supported"; still_mountable $DEV; }
mount_unknown_option_fails_with_einval() { "$MKFS" -q -f $DEV; expect_einval $DEV bogus=1 "Unknown parameter 'bogus'"; still_mountable $DEV; }
mount_bad_trace_size_fails_with_einval() {
  "$MKFS" -q -f $DEV
  expect_einval $DEV trace=0 "trace= takes a size in MiB from 1 to 1024"
  expect_einval $DEV trace=4096 "trace= takes a size in MiB from 1 to 1024"
  expect_einval $DEV trace=lots "Bad value for 'trace'"
  still_mountable $DEV
}

# The mount API (fs_context): mount -o remount, ro and rw, and what
# /proc/mounts shows.
remount_ro_refuses_every_write_and_rw_restores_them() {
  fresh_mount
  echo before > $MNT/f; mkdir $MNT/d
  mount -o remount,ro $MNT
  grep -qE "^$DEV $MNT ferrofs ro,.*dax" /proc/mounts || fail "after remount,ro: $(grep " $MNT " /proc/mounts)"
  assert_eq before "$(cat $MNT/f)" "read on the read-only mount"
  local op
  for op in "echo x > $MNT/f" "echo x > $MNT/new" "mkdir $MNT/d2" "rm $MNT/f" "mv $MNT/f $MNT/g" \
            "touch $MNT/f" "chmod 600 $MNT/f" "setfattr -n user.a -v 1 $MNT/f" "ln -s f $MNT/l" \
            "truncate -s 0 $MNT/f"; do
    if out=$(sh -c "$op" 2>&1); then fail "'$op' succeeded on a read-only mount"; fi
    echo "$out" | grep -q "Read-only file system" || fail "'$op': $out (expected EROFS)"
  done
  if "$FT" mmap-fill --sync none $MNT/f 1 4096 2>/tmp/err; then fail "a shared writable mmap on a read-only mount"; fi
  mount -o remount,rw $MNT
  grep -qE "^$DEV $MNT ferrofs rw,.*dax" /proc/mounts || fail "after remount,rw: $(grep " $MNT " /proc/mounts)"
  echo after > $MNT/f; echo new > $MNT/new
  remount
  assert_eq after "$(cat $MNT/f)" "f after rw and a new mount"
  assert_eq new "$(cat $MNT/new)" "new after rw and a new mount"
  umount $MNT
}
remount_ro_with_a_file_open_for_writing_is_busy() {
  fresh_mount
  exec 3>$MNT/f
  if out=$(mount -o remount,ro $MNT 2>&1); then exec 3>&-; fail "remount,ro with a writer succeeded"; fi
  echo "$out" | grep -qi "busy" || { exec 3>&-; fail "remount,ro with a writer: $out (expected EBUSY)"; }
  exec 3>&-
  mount -o remount,ro $MNT
  umount $MNT
}
remount_ro_flushes_stores_of_an_unmapped_mapping() {
  fresh_mount
  # 16 pages stored through a mapping, unmapped, never synced: their marks
  # outlive the mapping, and remount,ro must flush them.
  "$FT" mmap-fill --sync unmap $MNT/f 7 65536
  local before; before=$(counter entries_flushed)
  mount -o remount,ro $MNT
  local flushed=$(( $(counter entries_flushed) - before ))
  "$FT" verify $MNT/f 7 65536
  umount $MNT
  [ "$flushed" -eq 16 ] || fail "remount,ro flushed $flushed entries of a file with 16 dirty pages"
}
remount_keeps_the_trace_and_refuses_a_new_one() {
  mountpoint -q $MNT && umount $MNT; "$MKFS" -q -f $DEV; mkdir -p $MNT
  mount -t ferrofs -o dax,trace=1 $DEV $MNT
  local m1 m2 took=0
  m1=$(grep " $MNT " /proc/mounts)
  mount -o remount,trace=1 $MNT
  if mount -o remount,trace=2 $MNT 2>/dev/null; then took=1; fi
  m2=$(grep " $MNT " /proc/mounts)
  umount $MNT
  echo "$m1" | grep -qE "^$DEV $MNT ferrofs [^ ]*dax,trace=1" || fail "at mount: $m1"
  [ $took = 0 ] || fail "remount changed trace= from 1 to 2"
  echo "$m2" | grep -qE "^$DEV $MNT ferrofs [^ ]*trace=1" || fail "after remounts: $m2"
}
mount_non_dax_device_fails_with_einval() {
  truncate -s 64M /tmp/nondax.img
  "$MKFS" -q -f /tmp/nondax.img
  local loop; loop=$(losetup -f --show /tmp/nondax.img)
  expect_einval "$loop" dax "does not support DAX" || { losetup -d "$loop"; exit 1; }
  losetup -d "$loop"
}
mount_bad_magic_fails_with_einval() { "$MKFS" -q -f $DEV; "$FT" sbpatch $DEV magic NOTFERRO; expect_einval $DEV dax "bad magic"; still_mountable $DEV; }
mount_bad_checksum_fails_with_einval() { "$MKFS" -q -f $DEV; "$FT" flipbyte $DEV 120; expect_einval $DEV dax "bad checksum"; still_mountable $DEV; }
mount_unknown_version_fails_with_einval() { "$MKFS" -q -f $DEV; "$FT" sbpatch $DEV version 99 --fix-csum; expect_einval $DEV dax "unknown format version"; still_mountable $DEV; }
mount_superblock_larger_than_device_fails_with_einval() {
  "$MKFS" -q -f $DEV; "$FT" sbpatch $DEV blocks_count 1000000000 --fix-csum
  expect_einval $DEV dax "larger than the device"; still_mountable $DEV
}
mount_bad_block_size_fails_with_einval() { "$MKFS" -q -f $DEV; "$FT" sbpatch $DEV block_size 1024 --fix-csum; expect_einval $DEV dax "unsupported block size"; still_mountable $DEV; }
mount_unformatted_device_fails_with_einval() { dd if=/dev/zero of=$DEV bs=64K count=1 status=none; expect_einval $DEV dax "bad magic"; still_mountable $DEV; }

mkfs_refuses_too_small_image() {
  head -c 524288 /dev/urandom > /tmp/small.img; cp /tmp/small.img /tmp/small.orig
  if "$MKFS" -q /tmp/small.img; then fail "mkfs accepted a 512 KiB image"; else rc=$?; fi
  assert_eq 1 "$rc" "mkfs exit code"
  cmp -s /tmp/small.img /tmp/small.orig || fail "mkfs wrote to the image it refused"
}
mkfs_refuses_unknown_flag() {
  if "$MKFS" --bogus $DEV 2>/dev/null; then fail "accepted --bogus"; else rc=$?; fi
  assert_eq 1 "$rc" "mkfs exit code"
}
mkfs_refuses_existing_filesystem_without_f() {
  "$MKFS" -q -f $DEV
  if "$MKFS" -q $DEV 2>/dev/null; then fail "overwrote a ferrofs without -f"; fi
  mkfs.ext4 -q -F $DEV
  if "$MKFS" -q $DEV 2>/dev/null; then fail "overwrote an ext4 without -f"; fi
  "$MKFS" -q -f $DEV
}

t mkfs_mount_umount_remount_round_trip mkfs_mount_umount_remount_round_trip
t proc_mounts_shows_dax proc_mounts_shows_dax
t mount_log_names_the_flush_instruction mount_log_names_the_flush_instruction
t mount_dax_never_fails_with_einval mount_dax_never_fails_with_einval
t mount_unknown_option_fails_with_einval mount_unknown_option_fails_with_einval
t mount_bad_trace_size_fails_with_einval mount_bad_trace_size_fails_with_einval
t remount_ro_refuses_every_write_and_rw_restores_them remount_ro_refuses_every_write_and_rw_restores_them
t remount_ro_with_a_file_open_for_writing_is_busy remount_ro_with_a_file_open_for_writing_is_busy
t remount_ro_flushes_stores_of_an_unmapped_mapping remount_ro_flushes_stores_of_an_unmapped_mapping
t remount_keeps_the_trace_and_refuses_a_new_one remount_keeps_the_trace_and_refuses_a_new_one
t mount_non_dax_device_fails_with_einval mount_non_dax_device_fails_with_einval
t mount_bad_magic_fails_with_einval mount_bad_magic_fails_with_einval
t mount_bad_checksum_fails_with_einval mount_bad_checksum_fails_with_einval
t mount_unknown_version_fails_with_einval mount_unknown_version_fails_with_einval
t mount_superblock_larger_than_device_fails_with_einval mount_superblock_larger_than_device_fails_with_einval
t mount_bad_block_size_fails_with_einval mount_bad_block_size_fails_with_einval
t mount_unformatted_device_fails_with_einval mount_unformatted_device_fails_with_einval
t mkfs_refuses_too_small_image mkfs_refuses_too_small_image
t mkfs_refuses_unknown_flag mkfs_refuses_unknown_flag
t mkfs_refuses_existing_filesystem_without_f mkfs_refuses_existing_filesystem_without_f
