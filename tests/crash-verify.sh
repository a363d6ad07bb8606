#!/bin/bash
# Guest side of the hard-kill test, after the kill: mount (recovery), check
# every acknowledged operation from /mnt/out/acks.txt, and run fsck.
cd "$(dirname "$0")"
source ./lib.sh
load_module
mkdir -p /mnt/scratch
acknowledged_files_survive_the_kill() {
  mount -t ferrofs -o dax $DEV2 /mnt/scratch || fail "mount after the kill failed"
  local n=0 d=0
  declare -A deleted
  while read -r op name _; do [ "$op" = DEL ] && deleted[$name]=1; done < /mnt/out/acks.txt
  while read -r op name seed len; do
    case $op in
      ACK) [ -n "${deleted[$name]:-}" ] && continue
           "$FT" verify /mnt/scratch/$name $seed $len || fail "$name: acknowledged, lost or wrong"
           n=$((n + 1)) ;;
      DEL) [ ! -e /mnt/scratch/$name ] || fail "$name: deletion acknowledged, file still there"
           d=$((d + 1)) ;;
    esac
  done < /mnt/out/acks.txt
  echo "$n acknowledged files intact, $d acknowledged deletions hold"
  umount /mnt/scratch
}
fsck_after_the_kill() {
  "$BIN/fsck-ferrofs" -n $DEV2 || fail "fsck-ferrofs exit $?"
}
t acknowledged_files_survive_the_kill acknowledged_files_survive_the_kill
t fsck_after_the_kill fsck_after_the_kill
