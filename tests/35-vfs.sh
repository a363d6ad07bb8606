#!/bin/bash
# What the tools that test a Linux file system expect of it beyond files and
# directories: fsfreeze, rename flags, O_TMPFILE, chattr flags. Each case
# checks what reads back (bytes, errnos, counters, the device itself).
source "$(dirname "$0")/lib.sh"
load_module
fresh_mount
py() { python3 -c "$1"; }

# Frozen: writers of every kind wait (write(2), a store through a mapping
# that was writable before the freeze, a store into a fresh page, a create,
# the last close of an unlinked file),
# the device does not change until thaw, and then everything completes.
fsfreeze_blocks_writers_and_faults_until_thaw() {
  local f0 t0
  f0=$(counter freezes); t0=$(counter thaws)
  py "
import os, mmap, time, signal, subprocess, hashlib
M='$MNT'
f=os.open(M+'/frz', os.O_CREAT|os.O_RDWR); os.write(f, b'a'*65536); os.fsync(f)
m=mmap.mmap(f, 65536)
m[0:4]=b'PRE0'   # page 0 writable (and marked) before the freeze

def dev_digest():
    # O_DIRECT, so the block device's page cache cannot answer for it.
    out=subprocess.run(['dd','if=$DEV','bs=1M','count=32','iflag=direct','status=none'],
                       check=True, capture_output=True).stdout
    return hashlib.sha256(out).hexdigest()

# A child holds the only reference to an unlinked file; it lets go while
# frozen, so freeing the file (eviction) must wait for thaw.
open(M+'/doomed','wb').write(b'd'*(1<<20))
r,w=os.pipe(); r2,w2=os.pipe()
holder=os.fork()
if holder==0:
    os.close(w)
    h=os.open(M+'/doomed', os.O_RDONLY)
    os.write(w2, b'o')
    os.read(r, 1)
    os.close(h)
    os._exit(0)
os.close(r)
assert os.read(r2, 1)==b'o'
os.unlink(M+'/doomed')
subprocess.run(['fsfreeze','-f',M], check=True)
thawed=False
try:
    before=dev_digest()
    kids={'the last close of an unlinked file': holder}
    os.write(w, b'x')
    def child(name, fn):
        pid=os.fork()
        if pid==0:
            try:
                fn(); os._exit(0)
            except BaseException as e:
                os.write(2, f'{name}: {e!r}\n'.encode()); os._exit(1)
        kids[name]=pid
    child('write(2)', lambda: (lambda g: (os.write(g, b'W'*8192), os.close(g)))(os.open(M+'/frz', os.O_WRONLY|os.O_APPEND)))
    child('store to a page writable before the freeze', lambda: m.__setitem__(slice(8,12), b'OLD!'))
    child('store to a fresh page', lambda: m.__setitem__(slice(5*4096, 5*4096+4), b'NEW!'))
    child('create', lambda: os.close(os.open(M+'/frz-new', os.O_CREAT|os.O_WRONLY)))
    time.sleep(2)
    for name,pid in kids.items():
        r,_=os.waitpid(pid, os.WNOHANG)
        assert r==0, f'{name} finished on a frozen file system'
        st=open(f'/proc/{pid}/stat').read().rsplit(')',1)[1].split()[0]
        assert st=='D', f'{name}: state {st}, expected D (waiting for thaw)'
    after=dev_digest()
    assert before==after, 'the device changed while frozen'
    subprocess.run(['fsfreeze','-u',M], check=True); thawed=True
    for name,pid in kids.items():
        _,status=os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status)==0, f'{name} failed after thaw'
finally:
    # A failed check must not leave the file system frozen (and the suite hung).
    if not thawed:
        subprocess.run(['fsfreeze','-u',M])
m.flush(); m.close(); os.fsync(f); os.close(f)
"
  assert_eq $((f0 + 1)) "$(counter freezes)" "freezes counter"
  assert_eq $((t0 + 1)) "$(counter thaws)" "thaws counter"
  remount
  py "
import os
d=open('$MNT/frz','rb').read()
assert len(d)==65536+8192, len(d)
assert d[0:4]==b'PRE0' and d[8:12]==b'OLD!' and d[5*4096:5*4096+4]==b'NEW!', (d[0:12], d[5*4096:5*4096+4])
assert d[65536:]==b'W'*8192
assert os.path.exists('$MNT/frz-new')
"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? after freeze and thaw"
  mount -t ferrofs -o dax $DEV $MNT
}
t fsfreeze_blocks_writers_and_faults_until_thaw fsfreeze_blocks_writers_and_faults_until_thaw

umount $MNT
