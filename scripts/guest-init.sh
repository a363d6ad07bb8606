#!/bin/bash
# PID 1 of the ferrofs test guest (started by the kernel from the host root,
# shared read-only over 9p). Sets up a writable scratch world, runs the
# command in /mnt/out/cmd.sh (or a shell), records its status, powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=${TERM:-linux} LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
ln -sf /proc/self/fd /dev/fd; ln -sf fd/0 /dev/stdin; ln -sf fd/1 /dev/stdout; ln -sf fd/2 /dev/stderr
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
for d in /tmp /run /root /mnt /var/tmp /var/lib; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
chmod 1777 /tmp /var/tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /mnt/src /mnt/out /mnt/test /mnt/scratch
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro src /mnt/src
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /mnt/out
hostname ferrofs-guest 2>/dev/null
ip link set lo up 2>/dev/null

if [ "${ferro_mode:-run}" = shell ]; then
  echo "ferrofs guest: repository at /mnt/src, pmem at /dev/pmem0 /dev/pmem1; exit to power off"
  cd /mnt/src && setsid -c bash -i
  rc=$?
else
  bash /mnt/out/cmd.sh </dev/null >/dev/ttyS1 2>&1
  rc=$?
fi
dmesg > /mnt/out/dmesg.log 2>&1
echo "$rc" > /mnt/out/rc
sync
# Power off, then wait with shell builtins only: PID 1 must not exit (a
# panic), and once shutdown has begun nothing can be executed from the 9p
# root any more.
echo o > /proc/sysrq-trigger
while :; do read -r -t 1 _ <> /dev/null; done
