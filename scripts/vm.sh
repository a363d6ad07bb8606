#!/usr/bin/env bash
# Boot the ferrofs test kernel in QEMU with emulated pmem and run one command.
#
#   scripts/vm.sh [--timeout SECS] [--shell] [--kill-after MARKER SECS] [-- CMD ARGS...]
#
# --kill-after: SIGKILL QEMU (a power cut) SECS seconds after the command
# prints a line containing MARKER; exit status 137 then.
#
# Guest userland: the host root over virtio-9p, read-only, with tmpfs on
# /tmp, /run, /root and /mnt (as virtme-ng does). The repository is at
# /mnt/src (read-only), a writable results directory at /mnt/out.
# /dev/pmem0 and /dev/pmem1 (1 GiB each) are memmap= ranges of the guest RAM,
# which lives in $PMEM_FILE: their bytes survive a reboot or a SIGKILL of QEMU.
#
# Exit status: the command's, or 124 on timeout, 125 if the guest died
# (panic, oops) before the command finished. The kernel log is in
# $FERRO_OUT/console.log.
source "$(dirname "$0")/common.sh"

timeout=${FERRO_TIMEOUT:-900}
shell=0
kill_after=
kill_marker=
kill_at=
while (($#)); do
  case $1 in
    --timeout) timeout=$2; shift 2 ;;
    --shell) shell=1; shift ;;
    --kill-after) kill_marker=$2; kill_after=$3; shift 3 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
(($#)) || ((shell)) || set -- true

KDIR=$(kernel_dir)
BZ=$KDIR/arch/x86/boot/bzImage
[ -f "$BZ" ] || die "no kernel at $BZ: run scripts/kernel.sh"
OUT=${FERRO_OUT:-$FERRO_CACHE/out}
mkdir -p "$OUT"
rm -f "$OUT/rc" "$OUT/console.log" "$OUT/output.log" "$OUT/dmesg.log"
{
  echo '#!/bin/bash'
  echo 'cd /mnt/src'
  printf '%q ' "$@"; echo
} > "$OUT/cmd.sh"
# Two guests on one RAM file would share their memory: one at a time.
mkdir -p "$(dirname "$PMEM_FILE")"
exec 9>"$PMEM_FILE.lock"
if ! flock -n 9; then
  log "guest: another guest is using $PMEM_FILE; waiting"
  flock 9
fi
if [ ! -f "$PMEM_FILE" ]; then
  mkdir -p "$(dirname "$PMEM_FILE")"
  truncate -s "$GUEST_RAM" "$PMEM_FILE"
fi

qemu_args() {  # $1 = accel
  local mode=run
  ((shell)) && mode=shell
  # The kernel runs the init script straight from the host root.
  local cmdline="console=ttyS0 root=fsroot rootfstype=9p"
  cmdline+=" rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro"
  cmdline+=" init=$FERRO_ROOT/scripts/guest-init.sh $PMEM_CMDLINE"
  cmdline+=" panic=-1 oops=panic loglevel=5 ferro_mode=$mode"
  printf '%s\n' -nodefaults -no-reboot -display none -accel "$1" -cpu max -smp 2 \
    -m "$GUEST_RAM" \
    -object "memory-backend-file,id=ram0,size=$GUEST_RAM,mem-path=$PMEM_FILE,share=on" \
    -machine q35,memory-backend=ram0 \
    -kernel "$BZ" -append "$cmdline" \
    -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=root,mount_tag=fsroot \
    -fsdev "local,id=src,path=$FERRO_ROOT,security_model=none,readonly=on" \
    -device virtio-9p-pci,fsdev=src,mount_tag=src \
    -fsdev "local,id=out,path=$OUT,security_model=none" \
    -device virtio-9p-pci,fsdev=out,mount_tag=out
}

# KVM only where a probe boot proves it works (nested KVM often hangs in the
# decompressor); the verdict is cached per kernel.
pick_accel() {
  if [ -n "${FERRO_ACCEL:-}" ]; then echo "$FERRO_ACCEL"; return; fi
  local cache=$FERRO_CACHE/accel-$(kernel_key)
  if [ -f "$cache" ]; then cat "$cache"; return; fi
  local a=tcg
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    log "probing KVM (one boot, 30 s limit)"
    if FERRO_ACCEL=kvm FERRO_OUT=$OUT/probe PMEM_FILE=$FERRO_CACHE/probe-ram.img \
      "$0" --timeout 30 -- true >/dev/null 2>&1; then a=kvm; fi
    rm -f "$FERRO_CACHE/probe-ram.img" "$FERRO_CACHE/probe-ram.img.lock"
  fi
  echo "$a" > "$cache"
  echo "$a"
}

accel=$(pick_accel)
log "guest: accelerator $accel$([ "$accel" = tcg ] && echo ' (software emulation: absolute times mean little)')"
mapfile -t args < <(qemu_args "$accel")

if ((shell)); then
  exec qemu-system-x86_64 "${args[@]}" -serial mon:stdio -serial null
fi

qemu-system-x86_64 "${args[@]}" -serial "file:$OUT/console.log" -serial "file:$OUT/output.log" \
  </dev/null >"$OUT/qemu.log" 2>&1 &
qpid=$!
touch "$OUT/output.log"
tail -n +1 -f --pid=$qpid "$OUT/output.log" &
tpid=$!
deadline=$((SECONDS + timeout))
status=
while kill -0 $qpid 2>/dev/null; do
  if ((SECONDS >= deadline)); then status=124; break; fi
  if [ -n "$kill_marker" ]; then
    if [ -z "$kill_at" ] && grep -q "$kill_marker" "$OUT/output.log"; then
      kill_at=$(( $(date +%s%N) / 1000000 + kill_after * 1000 ))
    fi
    if [ -n "$kill_at" ] && (( $(date +%s%N) / 1000000 >= kill_at )); then
      kill -9 $qpid 2>/dev/null || true
      log "guest: killed with SIGKILL ${kill_after}s after '$kill_marker'"
      status=137
      break
    fi
  fi
  sleep 0.1
done
if [ "$status" = 124 ]; then
  kill -9 $qpid 2>/dev/null || true
  log "guest: timed out after ${timeout}s; killed"
fi
wait $qpid 2>/dev/null || true
sleep 0.3; kill $tpid 2>/dev/null || true; wait $tpid 2>/dev/null || true
if [ -z "$status" ]; then
  if [ -f "$OUT/rc" ]; then
    status=$(cat "$OUT/rc")
  else
    status=125
    log "guest: died before the command finished (panic or oops?); kernel log tail:"
    tail -n 40 "$OUT/console.log" >&2 || true
  fi
fi
exit "$status"
