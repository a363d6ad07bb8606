#!/bin/bash
# Guest side of the hard-kill test, after the kill: mount (journal recovery,
# orphans freed), check every acknowledged operation from /mnt/out/acks.txt,
# and run fsck, which must find nothing to repair.
cd "$(dirname "$0")"
source ./lib.sh
load_module
mkdir -p /mnt/scratch
acknowledged_operations_survive_the_kill() {
  kmsg_mark
  mount -t ferrofs -o dax $DEV2 /mnt/scratch || fail "mount after the kill failed"
  kmsg_since | grep -E 'ferrofs: (journal|.*orphan)' || true
  local n=0 d=0 m=0 u=0 x=0
  declare -A deleted moved rmstart mvstart xarm xarmstart
  while read -r op name new; do
    case $op in
      DEL) deleted[$name]=1 ;;
      MV) moved[$name]=$new ;;
      RMSTART) rmstart[$name]=1 ;;
      MVSTART) mvstart[$name]=$new ;;
      XARM) xarm[$name]=1 ;;
      XARMSTART) xarmstart[$name]=1 ;;
    esac
  done < /mnt/out/acks.txt
  while read -r op name seed len; do
    case $op in
      ACK) local at=$name
           while [ -n "${moved[$at]:-}" ]; do at=${moved[$at]}; done
           [ -n "${deleted[$at]:-}" ] && continue
           # Killed inside an unacknowledged rename or unlink: either outcome.
           if [ -n "${mvstart[$at]:-}" ] && [ ! -e /mnt/scratch/$at ]; then at=${mvstart[$at]}; u=$((u + 1)); fi
           if [ -n "${rmstart[$at]:-}" ] && [ ! -e /mnt/scratch/$at ]; then u=$((u + 1)); continue; fi
           "$FT" verify /mnt/scratch/$at $seed $len || fail "$name (now $at): acknowledged, lost or wrong"
           n=$((n + 1)) ;;
      XA) local at=$name
           while [ -n "${moved[$at]:-}" ]; do at=${moved[$at]}; done
           [ -n "${deleted[$at]:-}" ] && continue
           if [ -n "${mvstart[$at]:-}" ] && [ ! -e /mnt/scratch/$at ]; then at=${mvstart[$at]}; fi
           [ -e /mnt/scratch/$at ] || continue  # caught in an unacknowledged unlink
           local got
           got=$(getfattr --only-values -n user.seed /mnt/scratch/$at 2>/dev/null) || got=ABSENT
           if [ -n "${xarm[$name]:-}" ]; then
             [ "$got" = ABSENT ] || fail "$name (now $at): user.seed removal acknowledged, still '$got'"
           elif [ -z "${xarmstart[$name]:-}" ]; then
             [ "$got" = "$seed" ] || fail "$name (now $at): user.seed acknowledged as $seed, got '$got'"
           fi
           x=$((x + 1)) ;;
      MV) [ ! -e /mnt/scratch/$name ] || fail "$name: rename to $seed acknowledged, old name still there"
           m=$((m + 1)) ;;
      DEL) [ ! -e /mnt/scratch/$name ] || fail "$name: deletion acknowledged, file still there"
           d=$((d + 1)) ;;
    esac
  done < /mnt/out/acks.txt
  echo "$n acknowledged files intact, $x extended attributes, $m renames and $d deletions hold ($u caught mid-call)"
  # The workload sets one right after its second file's ACK.
  if (( $(grep -c '^ACK' /mnt/out/acks.txt) >= 3 && $(grep -c '^XA ' /mnt/out/acks.txt) == 0 )); then
    fail "the workload acknowledged no extended attribute"
  fi
  umount /mnt/scratch
}
the_open_unlinked_file_is_freed_at_mount() {
  # The workload held one unlinked file open at the kill: an orphan.
  grep -q "freed [1-9][0-9]* orphan" <(kmsg_since_all) || fail "no 'freed N orphan inodes' at mount"
}
kmsg_since_all() { dmesg; }
fsck_finds_nothing_to_repair() {
  "$BIN/fsck-ferrofs" -n $DEV2 || fail "fsck-ferrofs exit $?"
}
t acknowledged_operations_survive_the_kill acknowledged_operations_survive_the_kill
t the_open_unlinked_file_is_freed_at_mount the_open_unlinked_file_is_freed_at_mount
t fsck_finds_nothing_to_repair fsck_finds_nothing_to_repair
