#!/usr/bin/env bash
# `make bench`: build, boot one guest, and on /dev/pmem0 run ferrobench on
# ferrofs, ext4 -o dax and xfs -o dax in turn (tests/bench-guest.sh). Then
# write results.md (medians and ferrofs/ext4, ferrofs/xfs ratios), keep
# every sample (<fs>.json) and plot case 1 (bench-fsync.png), all in
# results/bench/<timestamp>/, and print the table and that path.
#
#   scripts/bench.sh [--full] [--cases 1,2,...] [ferrofs] [ext4] [xfs]
#
# --quick (fewer samples: about 8 minutes under TCG on an idle 2-core
# machine) is the default; --full takes about 3 times the samples.
# FERRO_BENCH_TIMEOUT bounds the guest run (s, default 1800).
source "$(dirname "$0")/common.sh"
cd "$FERRO_ROOT"
start=$SECONDS
invocation="make bench"
(($#)) && invocation="bash scripts/bench.sh $*"

mode=--quick
guest_args=()
while (($#)); do
  case $1 in
    --full) mode=; shift ;;
    --quick) mode=--quick; shift ;;
    --cases) guest_args+=(--cases "$2"); shift 2 ;;
    ferrofs|ext4|xfs) guest_args+=("$1"); shift ;;
    *) die "usage: scripts/bench.sh [--full] [--cases 1,2,...] [ferrofs] [ext4] [xfs]" ;;
  esac
done
[ -n "$mode" ] && guest_args=("$mode" "${guest_args[@]}")

bash scripts/build.sh

# matplotlib comes from Debian's python3-matplotlib: prefer /usr/bin/python3
# over whatever python3 is first on PATH.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

export FERRO_OUT=${FERRO_OUT:-$FERRO_CACHE/out}
RES=$FERRO_ROOT/results/bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES"
rm -rf "$FERRO_OUT/bench"

log "bench: guest run (progress below; $mode)"
set +e
bash scripts/vm.sh --timeout "${FERRO_BENCH_TIMEOUT:-1800}" -- bash tests/bench-guest.sh "${guest_args[@]}" \
  2>&1 | tee "$RES/guest.log"
rc=${PIPESTATUS[0]}
set -e
failed() { if [ "$rc" = 0 ]; then rc=1; fi; }
accel=$(sed -n 's/.*guest: accelerator \([a-z]*\).*/\1/p' "$RES/guest.log" | head -n 1)
[ -d "$FERRO_OUT/bench" ] && cp -r "$FERRO_OUT/bench/." "$RES/"
cp "$FERRO_OUT/console.log" "$RES/console.log" 2>/dev/null || true
cp "$FERRO_OUT/dmesg.log" "$RES/dmesg.log" 2>/dev/null || true
case $rc in
  0) ;;
  124) log "bench: the guest timed out (FERRO_BENCH_TIMEOUT); results are partial" ;;
  125) log "bench: the guest died (panic/oops); results are partial" ;;
  *) log "bench: the guest run failed (exit $rc); results may be partial" ;;
esac
# Same check as `make check`: a benchmark run on a kernel that warned is suspect.
BAD='BUG:|WARNING:|Oops|general protection fault|possible circular locking|possible recursive locking|inconsistent lock state|KASAN|UBSAN|sleeping function called from invalid context|Call Trace:|Kernel panic'
if cat "$RES/console.log" "$RES/dmesg.log" 2>/dev/null | grep -E "$BAD" > "$RES/kernel-bad.log"; then
  log "bench: the guest kernel log has errors (see $RES/kernel-bad.log):"
  head -n 20 "$RES/kernel-bad.log" >&2
  failed
else
  rm -f "$RES/kernel-bad.log"
fi

total=$((SECONDS - start))
if ls "$RES"/*.json >/dev/null 2>&1; then
  "$PY" scripts/bench-report.py --dir "$RES" --accel "${accel:-unknown}" --seconds "$total" \
    --command "$invocation" || failed
  echo
  sed '/^## Spread/,$d' "$RES/results.md"
else
  log "bench: no results were produced"
  failed
fi
echo
echo "$invocation took $total s; accelerator: ${accel:-unknown}; results in $RES"
exit "$rc"
