#!/bin/bash
# Guest side of the hard-kill test: create, write (write(2) and mmap),
# fsync, syncfs, rename, mkdir/rmdir and delete files on pmem1 forever, printing one
# line per operation that returned (the host keeps them; QEMU is SIGKILLed
# at a random moment):
#   ACK NAME SEED LEN    NAME holds exactly this pattern (its fsync, msync or
#                        syncfs returned; or, for MAP_SYNC, its stores into
#                        the new file's holes were written back with clwb and
#                        fenced from user space, with no system call)
#   MV NAME NEW          NAME was renamed to NEW (rename(2) returned)
#   XA NAME SEED         NAME has the extended attribute user.seed = SEED
#   XARM NAME            NAME's user.seed was removed (XARMSTART before)
#   DEL NAME             NAME is gone (unlink(2) returned)
#   MVSTART/RMSTART ...  printed before the call: the kill may land between
#                        the call and its acknowledgement
# Metadata operations are durable when they return (one journal transaction
# each), so MV and DEL are acknowledged without sync. Names are never
# reused. One file is held open after its unlink: an orphan for the next
# mount to free.
source "$(dirname "$0")/lib.sh"
round=$1
load_module
mkdir -p /mnt/scratch
if [ "$round" = 1 ]; then "$MKFS" -q -f $DEV2; fi
mount -t ferrofs -o dax $DEV2 /mnt/scratch
mkdir -p /mnt/scratch/r$round/sub
"$FT" fill /mnt/scratch/r$round/orphan 1 1000000
exec 7</mnt/scratch/r$round/orphan
rm /mnt/scratch/r$round/orphan
echo "READY round $round"
# Two workers at once (names and seeds of their own), so that the crash can
# land with transactions of both in flight in different journal areas.
# echo writes each line with one write(2), which the tty keeps whole.
work() {
local p=$1 base=$2
local i=0
local acked=()
while :; do
  i=$((i + 1))
  name=r$round/${p}f$i
  seed=$((round * 100000 + base + i))
  len=$(( (RANDOM % 64 + 1) * 1500 ))
  case $((i % 5)) in
    0) "$FT" mmap-fill /mnt/scratch/$name $seed $len --sync=msync ;;
    1) "$FT" mmap-fill /mnt/scratch/$name $seed $len --sync=none ;;
    2) "$FT" mmap-fill /mnt/scratch/$name $seed $len --sync=syncfs ;;
    # Every other MAP_SYNC file is 4 MiB and more: whole 2 MiB extents
    # mapped with PMDs.
    3) if ((i % 10 == 8)); then len=$((4194304 + len)); fi
       "$FT" mmap-fill /mnt/scratch/$name $seed $len --sync=mapsync ;;
    *) "$FT" fill /mnt/scratch/$name $seed $len ;;
  esac && echo "ACK $name $seed $len" && acked+=("$name")
  # Extended attributes: one transaction each, durable when they return.
  if ((i % 2 == 0)) && [ -e /mnt/scratch/$name ]; then
    setfattr -n user.seed -v "$seed" /mnt/scratch/$name && echo "XA $name $seed"
    if ((i % 6 == 0)); then
      echo "XARMSTART $name"
      setfattr -x user.seed /mnt/scratch/$name && echo "XARM $name"
    fi
  fi
  if ((i % 3 == 0)) && ((${#acked[@]} > 1)); then
    last=$((${#acked[@]} - 1))
    from=${acked[$last]}; to=r$round/sub/${p}m$i
    echo "MVSTART $from $to"
    mv /mnt/scratch/$from /mnt/scratch/$to && echo "MV $from $to" && acked[$last]=$to
  fi
  if ((i % 7 == 0)); then
    mkdir /mnt/scratch/r$round/${p}d$i && rmdir /mnt/scratch/r$round/${p}d$((i - 7)) 2>/dev/null || true
  fi
  if ((i % 5 == 0)) && ((${#acked[@]} > 2)); then
    victim=${acked[0]}; acked=("${acked[@]:1}")
    echo "RMSTART $victim"
    rm /mnt/scratch/$victim && echo "DEL $victim"
  fi
done
}
work a 0 &
work b 50000 &
wait
