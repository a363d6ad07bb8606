#!/bin/bash
# Structure-aware fuzzing (issue 9, section 5): ferrofuzz (tools/fuzz) makes a
# populated base image through the module, then per round changes one field
# of it to a hostile value with every checksum recomputed, writes it to
# /dev/pmem1, mounts it, walks and reads the whole tree, maps, writes,
# truncates, punches, creates, renames, links and removes, and unmounts.
# A round fails on any warning, oops, lockdep report or hang in the kernel
# log; errors returned to user space are fine and are counted.
# FERRO_FUZZ_ROUNDS (default 200) and FERRO_FUZZ_SEED (default fixed, printed)
# change the run; the log of every round is in $FERRO_OUT/fuzz.log, the base in
# $FERRO_OUT/fuzz-base.img. If the guest dies, the console log's last
# "ferrofuzz: seed S round R: ..." line names the mutation that killed it.
source "$(dirname "$0")/lib.sh"
load_module
FZ=$BIN/ferrofuzz
rounds=${FERRO_FUZZ_ROUNDS:-200}
seed=${FERRO_FUZZ_SEED:-60609}
base=/tmp/fuzz-base.img
fmnt=/mnt/fuzz
log=/dev/null
if [ -d /mnt/out ] && [ -w /mnt/out ]; then log=/mnt/out/fuzz.log; : > "$log"; fi
echo "# ferrofuzz: seed $seed, $rounds rounds (FERRO_FUZZ_SEED, FERRO_FUZZ_ROUNDS); log in $log"

base_image_is_populated_through_the_module() {
  [ -x "$FZ" ] || fail "no $FZ: build the tools"
  "$FZ" make-base --out $base --dev $DEV2 --mnt $fmnt --mkfs "$MKFS"
  # Kept for replays: ferrofuzz replay --base fuzz-base.img --seed S --round R
  if [ "$log" != /dev/null ]; then cp $base /mnt/out/fuzz-base.img; fi
}

fuzz_rounds_leave_the_kernel_clean() {
  [ -s $base ] || fail "no base image"
  local rc=0
  "$FZ" run --base $base --dev $DEV2 --mnt $fmnt --seed "$seed" --rounds "$rounds" \
    --timeout 60 --log "$log" > /tmp/fuzz.out 2>&1 || rc=$?
  grep -E '^ferrofuzz: [0-9]+ rounds' /tmp/fuzz.out | tail -n 1 > /tmp/fuzz-summary || true
  # On failure, what failed (t shows the last lines).
  if [ $rc != 0 ]; then
    grep -E 'KERNEL PROBLEM|HANG|^  kernel:' /tmp/fuzz.out | head -n 40
    tail -n 3 /tmp/fuzz.out
    fail "ferrofuzz exit $rc"
  fi
  tail -n 1 /tmp/fuzz.out
}

summary_printed() {
  [ -s /tmp/fuzz-summary ] || fail "no summary line"
}

t base_image_is_populated_through_the_module base_image_is_populated_through_the_module
t "fuzz: $rounds rounds with seed $seed leave the kernel clean" fuzz_rounds_leave_the_kernel_clean
summary=$(sed 's/^ferrofuzz: //; s/#//g' /tmp/fuzz-summary 2>/dev/null)
t "fuzz summary: ${summary:-none}" summary_printed
mountpoint -q $fmnt && umount $fmnt
true
