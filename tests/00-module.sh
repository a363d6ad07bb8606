#!/bin/bash
# The module and the emulated hardware it needs.
source "$(dirname "$0")/lib.sh"

module_loads() {
  kmsg_mark
  insmod "$KO"
  grep -q '^ferrofs ' /proc/modules || fail "ferrofs not in /proc/modules"
  kmsg_since | grep -q 'ferrofs: loaded' || fail "no load message in the kernel log"
}
filesystem_type_is_registered() {
  grep -qE '^\s*ferrofs$' /proc/filesystems || fail "$(cat /proc/filesystems | tr '\n' ' ')"
}
sysfs_root_exists() {
  [ -d /sys/fs/ferrofs ] || fail "/sys/fs/ferrofs missing"
}
pmem0_and_pmem1_are_dax_capable() {
  for d in pmem0 pmem1; do
    [ -b /dev/$d ] || fail "/dev/$d missing"
    assert_eq 1 "$(cat /sys/block/$d/queue/dax)" "$d queue/dax"
  done
}
guest_cpu_has_clwb() {
  grep -qw clwb /proc/cpuinfo || fail "no clwb in /proc/cpuinfo flags"
}
module_unloads_and_reloads() {
  kmsg_mark
  rmmod ferrofs
  ! grep -qw ferrofs /proc/filesystems || fail "still registered after rmmod"
  [ ! -d /sys/fs/ferrofs ] || fail "/sys/fs/ferrofs left behind"
  kmsg_since | grep -q 'ferrofs: unloaded' || fail "no unload message"
  insmod "$KO"
  grep -qw ferrofs /proc/filesystems || fail "not registered after reload"
}

t module_loads module_loads
t filesystem_type_is_registered filesystem_type_is_registered
t sysfs_root_exists sysfs_root_exists
t pmem0_and_pmem1_are_dax_capable pmem0_and_pmem1_are_dax_capable
t guest_cpu_has_clwb guest_cpu_has_clwb
t module_unloads_and_reloads module_unloads_and_reloads
