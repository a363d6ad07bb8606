#!/usr/bin/env bash
# Run ferrofuzz rounds in guests, booting again after each round that kills
# the guest (a panic: oops=panic), and list every round that crashed or
# warned, with the kernel's reason and a replay command.
#
#   scripts/fuzz-hunt.sh [--seed S] [--first R] [--rounds N] [--boots B] [-- RUN-OPTIONS]
#
# Defaults: the seed of tests/60-fuzz.sh, rounds 1-1000, at most 20 boots.
# RUN-OPTIONS go to `ferrofuzz run` (e.g. --skip-kind inode-blocks). The
# base image is made once (through the module) and kept in
# $FERRO_OUT/base.img, so every boot fuzzes the same base; findings go to
# $FERRO_OUT/findings.txt. Needs the kernel, the module and the tools built.
# Set PMEM_FILE and FERRO_OUT to keep clear of other guests.
source "$(dirname "$0")/common.sh"
cd "$FERRO_ROOT"
seed=60609 first=1 rounds=1000 boots=20
while (($#)); do
  case $1 in
    --seed) seed=$2; shift 2 ;;
    --first) first=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --boots) boots=$2; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option $1" ;;
  esac
done
OUT=${FERRO_OUT:-$FERRO_CACHE/out}
export FERRO_OUT=$OUT
mkdir -p "$OUT"
last=$((first + rounds - 1))
findings=$OUT/findings.txt
: > "$findings"
opts=
if (($#)); then opts=$(printf '%q ' "$@"); fi
for ((boot = 1; boot <= boots && first <= last; boot++)); do
  n=$((last - first + 1))
  cat > "$OUT/hunt.sh" <<EOF
set -e
insmod /mnt/src/ferrofs.ko
B=/mnt/src/tools/target/release
[ -s /mnt/out/base.img ] || \$B/ferrofuzz make-base --out /mnt/out/base.img --mkfs \$B/mkfs-ferrofs
cp /mnt/out/base.img /tmp/base.img
set +e
\$B/ferrofuzz run --base /tmp/base.img --seed $seed --first $first --rounds $n --log /mnt/out/fuzz.log $opts > /mnt/out/hunt-run.log 2>&1
rc=\$?
tail -n 2 /mnt/out/hunt-run.log
exit \$rc
EOF
  log "hunt: boot $boot, rounds $first-$last"
  rc=0
  bash scripts/vm.sh --timeout 1200 -- bash /mnt/out/hunt.sh > "$OUT/hunt-boot.log" 2>&1 || rc=$?
  # Rounds that warned without killing the guest.
  grep -E 'KERNEL PROBLEM|HANG' "$OUT/hunt-run.log" 2>/dev/null >> "$findings" || true
  grep -E '^ferrofuzz: round [0-9]+: ' "$OUT/hunt-run.log" 2>/dev/null >> "$findings" || true
  if [ "$rc" = 3 ]; then
    # A round hung: the run stopped there; go on after it.
    r=$(grep -E '^round [0-9]+: HANG' "$OUT/hunt-run.log" | tail -n 1 | sed -E 's/^round ([0-9]+):.*/\1/')
    [ -n "$r" ] || die "ferrofuzz reported a hang but no round (see $OUT/hunt-run.log)"
    echo "  replay: ferrofuzz replay --base BASE --seed $seed --round $r $opts" >> "$findings"
    cp "$OUT/hunt-run.log" "$OUT/hunt-run-round-$r.log"
    first=$((r + 1))
    continue
  fi
  if [ "$rc" != 125 ]; then
    log "hunt: the guest finished (exit $rc)"
    tail -n 2 "$OUT/hunt-run.log" 2>/dev/null || true
    break
  fi
  # The round that killed the guest: the last mutation printed (before its
  # mount) in the run's log, else the last marker on the console.
  r=$(grep -E '^round [0-9]+: ' "$OUT/hunt-run.log" 2>/dev/null | tail -n 1 | sed -E 's/^round ([0-9]+):.*/\1/')
  mark=$(grep -aE "ferrofuzz: seed [0-9]+ round ${r:-[0-9]+}:" "$OUT/console.log" | tail -n 1)
  [ -n "$r" ] || r=$(sed -E 's/.*round ([0-9]+):.*/\1/' <<< "$mark")
  [ -n "$r" ] || die "the guest died before any round (see $OUT/console.log)"
  why=$(grep -aE -A1 'panicked at|BUG:|general protection|Oops' "$OUT/console.log" | head -n 4 | sed 's/^\[[ 0-9.]*\] //' | tr '\n' ' ')
  what=$(grep -E "^round $r: " "$OUT/hunt-run.log" | head -n 1)
  echo "round $r CRASH: ${what#round $r: } :: $why" | tee -a "$findings"
  echo "  replay: ferrofuzz replay --base BASE --seed $seed --round $r $opts" >> "$findings"
  cp "$OUT/console.log" "$OUT/console-round-$r.log"
  first=$((r + 1))
done
echo "findings ($findings):"
cat "$findings"
