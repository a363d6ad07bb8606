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
mount_unknown_option_fails_with_einval() { "$MKFS" -q -f $DEV; expect_einval $DEV bogus=1 'unknown mount option "bogus=1"'; still_mountable $DEV; }
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
