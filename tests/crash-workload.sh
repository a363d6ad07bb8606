#!/bin/bash
# Guest side of the hard-kill test: create, write (write(2) and mmap),
# fsync, rename and delete files on pmem1 forever, printing one line per
# operation whose fsync returned (the host keeps them; QEMU is SIGKILLed at
# a random moment):
#   ACK NAME SEED LEN    NAME holds exactly this pattern
#   DEL NAME             NAME is gone
# Names are never reused, so an acknowledged file is never rewritten.
source "$(dirname "$0")/lib.sh"
round=$1
load_module
mkdir -p /mnt/scratch
if [ "$round" = 1 ]; then "$MKFS" -q -f $DEV2; fi
mount -t ferrofs -o dax $DEV2 /mnt/scratch
mkdir -p /mnt/scratch/r$round/sub
echo "READY round $round"
i=0
acked=()
while :; do
  i=$((i + 1))
  name=r$round/f$i
  seed=$((round * 100000 + i))
  len=$(( (RANDOM % 64 + 1) * 1500 ))
  case $((i % 4)) in
    0) "$FT" mmap-fill /mnt/scratch/$name $seed $len --sync=msync ;;
    1) "$FT" mmap-fill /mnt/scratch/$name $seed $len --sync=none ;;
    *) "$FT" fill /mnt/scratch/$name $seed $len ;;
  esac && echo "ACK $name $seed $len" && acked+=("$name")
  if ((i % 5 == 0)) && ((${#acked[@]} > 2)); then
    victim=${acked[0]}; acked=("${acked[@]:1}")
    rm /mnt/scratch/$victim && sync
    echo "DEL $victim"
  fi
done
