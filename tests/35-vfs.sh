#!/bin/bash
# What the tools that test a Linux file system expect of it beyond files and
# directories: fsfreeze, rename flags, O_TMPFILE, chattr flags, extended
# attributes and POSIX ACLs. Each case
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

# renameat2 through ctypes (Python's os.rename has no flags).
# refused(what, fn, want=EPERM): fn() must fail with errno `want`.
REFUSED='
import errno
def refused(what, fn, want=errno.EPERM):
    try:
        fn()
    except OSError as e:
        assert e.errno==want, (what, errno.errorcode.get(e.errno))
        return
    raise SystemExit(what+": allowed")
'
RENAME2='
import ctypes, os, errno
libc=ctypes.CDLL(None, use_errno=True)
AT_FDCWD=-100
NOREPLACE, EXCHANGE, WHITEOUT = 1, 2, 4
def rename2(a, b, flags):
    r=libc.syscall(316, AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags)
    return 0 if r==0 else ctypes.get_errno()
'

rename_noreplace_refuses_an_existing_target() {
  py "$RENAME2
M='$MNT/rn'; os.makedirs(M, exist_ok=True)
open(M+'/a','w').write('A'); open(M+'/b','w').write('B')
e=rename2(M+'/a', M+'/b', NOREPLACE)
assert e==errno.EEXIST, ('RENAME_NOREPLACE onto an existing name', errno.errorcode.get(e, e))
assert open(M+'/a').read()=='A' and open(M+'/b').read()=='B'
assert rename2(M+'/a', M+'/c', NOREPLACE)==0
assert not os.path.exists(M+'/a') and open(M+'/c').read()=='A'
e=rename2(M+'/c', M+'/d', EXCHANGE | NOREPLACE)
assert e==errno.EINVAL, ('RENAME_EXCHANGE|RENAME_NOREPLACE', errno.errorcode.get(e, e))
"
}
t rename_noreplace_refuses_an_existing_target rename_noreplace_refuses_an_existing_target

# RENAME_WHITEOUT (overlayfs's copy-up): the old name is left as a
# whiteout, a character device 0:0 with mode 0, in the same transaction;
# over an existing target, across directories, for a directory; all of it
# across a remount and clean in fsck.
rename_whiteout_leaves_a_whiteout() {
  py "$RENAME2
import stat
M='$MNT/wo'; os.makedirs(M+'/p/sub', exist_ok=True); os.makedirs(M+'/q', exist_ok=True)
open(M+'/a','w').write('A'); open(M+'/t','w').write('T'); open(M+'/p/sub/in','w').write('in')
def is_whiteout(path):
    st=os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode)==0 and st.st_rdev==0 and st.st_nlink==1
assert rename2(M+'/a', M+'/b', WHITEOUT)==0
assert open(M+'/b').read()=='A' and is_whiteout(M+'/a'), os.lstat(M+'/a')
ti=os.stat(M+'/t').st_ino
assert rename2(M+'/b', M+'/t', WHITEOUT)==0
assert open(M+'/t').read()=='A' and is_whiteout(M+'/b') and os.stat(M+'/t').st_ino!=ti
e=rename2(M+'/t', M+'/a', WHITEOUT | NOREPLACE)
assert e==errno.EEXIST, ('RENAME_WHITEOUT|RENAME_NOREPLACE onto a whiteout', errno.errorcode.get(e, e))
np, nq = os.stat(M+'/p').st_nlink, os.stat(M+'/q').st_nlink
assert rename2(M+'/p/sub', M+'/q/sub', WHITEOUT)==0
assert is_whiteout(M+'/p/sub') and open(M+'/q/sub/in').read()=='in'
assert os.stat(M+'/p').st_nlink==np-1 and os.stat(M+'/q').st_nlink==nq+1
assert os.stat(M+'/q/sub/..').st_ino==os.stat(M+'/q').st_ino
os.unlink(M+'/a')
assert not os.path.lexists(M+'/a')
"
  remount
  py "
import os, stat
M='$MNT/wo'
def is_whiteout(path):
    st=os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode)==0 and st.st_rdev==0
assert is_whiteout(M+'/b') and is_whiteout(M+'/p/sub') and not os.path.lexists(M+'/a')
assert open(M+'/t').read()=='A' and open(M+'/q/sub/in').read()=='in'
assert os.stat(M+'/p').st_nlink==2 and os.stat(M+'/q').st_nlink==3
assert sorted(os.listdir(M))==['b', 'p', 'q', 't'], os.listdir(M)
"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? after RENAME_WHITEOUT"
  mount -t ferrofs -o dax $DEV $MNT
}
t rename_whiteout_leaves_a_whiteout rename_whiteout_leaves_a_whiteout

# Access times: read(2) sets atime under relatime (once, while atime is
# older than mtime) and stores it; noatime leaves it alone.
read_updates_atime_under_relatime_not_noatime() {
  echo data > $MNT/at
  touch -a -d '2001-01-01 00:00:00' $MNT/at
  cat $MNT/at >/dev/null
  local a1; a1=$(stat -c %X $MNT/at)
  [ "$a1" -gt 1000000000 ] && [ "$a1" -ge "$(stat -c %Y $MNT/at)" ] || fail "atime after a read under relatime: $a1 (mtime $(stat -c %Y $MNT/at))"
  sleep 1.1; cat $MNT/at >/dev/null
  assert_eq "$a1" "$(stat -c %X $MNT/at)" "atime after a second read under relatime"
  remount
  assert_eq "$a1" "$(stat -c %X $MNT/at)" "atime after a remount"
  umount $MNT; mount -t ferrofs -o dax,noatime $DEV $MNT
  touch -a -d '2001-01-01 00:00:00' $MNT/at
  local a0; a0=$(stat -c %X $MNT/at)
  cat $MNT/at >/dev/null
  assert_eq "$a0" "$(stat -c %X $MNT/at)" "atime after a read under noatime"
  remount
}
t read_updates_atime_under_relatime_not_noatime read_updates_atime_under_relatime_not_noatime

# RENAME_EXCHANGE of two files in one directory, and of a file and a
# directory across directories: names swap atomically, link counts and
# '..' follow, all of it across a remount and clean in fsck.
rename_exchange_swaps_files_and_directories() {
  py "$RENAME2
M='$MNT/ex'; os.makedirs(M+'/p/sub', exist_ok=True); os.makedirs(M+'/q', exist_ok=True)
open(M+'/f1','w').write('one'); open(M+'/f2','w').write('two')
i1, i2 = os.stat(M+'/f1').st_ino, os.stat(M+'/f2').st_ino
assert rename2(M+'/f1', M+'/f2', EXCHANGE)==0
assert open(M+'/f1').read()=='two' and open(M+'/f2').read()=='one'
assert os.stat(M+'/f1').st_ino==i2 and os.stat(M+'/f2').st_ino==i1
open(M+'/p/sub/inner','w').write('in'); open(M+'/q/file','w').write('qf')
e=rename2(M+'/q/nothere', M+'/f1', EXCHANGE)
assert e==errno.ENOENT, ('RENAME_EXCHANGE with a missing name', errno.errorcode.get(e, e))
np, nq = os.stat(M+'/p').st_nlink, os.stat(M+'/q').st_nlink
assert rename2(M+'/p/sub', M+'/q/file', EXCHANGE)==0
assert open(M+'/p/sub').read()=='qf' and open(M+'/q/file/inner').read()=='in'
assert os.stat(M+'/p').st_nlink==np-1 and os.stat(M+'/q').st_nlink==nq+1, (os.stat(M+'/p').st_nlink, os.stat(M+'/q').st_nlink, np, nq)
assert os.stat(M+'/q/file/..').st_ino==os.stat(M+'/q').st_ino
"
  remount
  py "
import os
M='$MNT/ex'
assert open(M+'/f1').read()=='two' and open(M+'/f2').read()=='one'
assert open(M+'/p/sub').read()=='qf' and open(M+'/q/file/inner').read()=='in'
assert os.stat(M+'/q/file/..').st_ino==os.stat(M+'/q').st_ino
assert os.stat(M+'/p').st_nlink==2 and os.stat(M+'/q').st_nlink==3, (os.stat(M+'/p').st_nlink, os.stat(M+'/q').st_nlink)
assert sorted(os.listdir(M+'/q/file/..'))==['file'], os.listdir(M+'/q/file/..')
"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? after RENAME_EXCHANGE"
  mount -t ferrofs -o dax $DEV $MNT
}
t rename_exchange_swaps_files_and_directories rename_exchange_swaps_files_and_directories

# O_TMPFILE: a nameless file that takes data (write and a mapping), can be
# given a name with linkat (kept across a remount), and whose blocks come
# back when it is closed without one. O_EXCL makes it unlinkable.
o_tmpfile_files_work_and_are_freed_or_linked() {
  py "
import os, mmap, errno, ctypes
libc=ctypes.CDLL(None, use_errno=True)
def linkfd(fd, dst):
    # linkat(AT_FDCWD, /proc/self/fd/N, AT_FDCWD, dst, AT_SYMLINK_FOLLOW)
    if libc.linkat(-100, f'/proc/self/fd/{fd}'.encode(), -100, dst.encode(), 0x400)!=0:
        e=ctypes.get_errno(); raise OSError(e, os.strerror(e))
M='$MNT/tmpd'; os.makedirs(M, exist_ok=True)
def free(): s=os.statvfs(M); return s.f_bfree
before=free()
fd=os.open(M, os.O_TMPFILE|os.O_RDWR, 0o640)
assert os.listdir(M)==[], os.listdir(M)
os.write(fd, b'T'*(1<<20)); os.fsync(fd)
assert free() <= before-256, (before, free())
st=os.fstat(fd); assert st.st_nlink==0 and st.st_size==1<<20, st
os.close(fd)
assert free()==before, ('blocks of a closed O_TMPFILE file not freed', before, free())
fd=os.open(M, os.O_TMPFILE|os.O_RDWR, 0o600)
os.write(fd, b'x'*8192)
m=mmap.mmap(fd, 8192); m[100:104]=b'MMAP'; m.flush(); m.close()
linkfd(fd, M+'/named')
assert os.fstat(fd).st_nlink==1
os.fsync(fd); os.close(fd)
fd=os.open(M, os.O_TMPFILE|os.O_RDWR|os.O_EXCL, 0o600)
try:
    linkfd(fd, M+'/never')
    raise SystemExit('linkat of an O_TMPFILE|O_EXCL file succeeded')
except OSError as e:
    assert e.errno==errno.ENOENT, e
os.close(fd)
assert os.listdir(M)==['named'], os.listdir(M)
"
  remount
  py "
import os
d=open('$MNT/tmpd/named','rb').read()
assert len(d)==8192 and d[100:104]==b'MMAP' and d[:100]==b'x'*100, d[:110]
assert os.stat('$MNT/tmpd/named').st_nlink==1
assert oct(os.stat('$MNT/tmpd/named').st_mode & 0o777)=='0o600'
"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? after O_TMPFILE files"
  mount -t ferrofs -o dax $DEV $MNT
}
t o_tmpfile_files_work_and_are_freed_or_linked o_tmpfile_files_work_and_are_freed_or_linked

# The superblock's format version, read past the block device's page cache.
sb_version() {
  dd if=$DEV bs=4096 count=1 iflag=direct status=none | od -An -tu4 -j8 -N4 | tr -d ' '
}
attr_token() { lsattr -d "$1" | awk '{print $1}' | tr -d -; }

# chattr +i and +a: stored in the inode (format version 2), enforced by the
# VFS (EPERM for writes, truncates, unlinks, renames, links, chmod; an
# append-only file takes only O_APPEND writes and no shared writable
# mapping), kept across a remount, and cleared again by chattr -i -a.
chattr_immutable_and_append_only_are_enforced_and_kept() {
  mkdir -p $MNT/attr
  echo data > $MNT/attr/i; echo log > $MNT/attr/a
  chattr +i $MNT/attr/i; chattr +a $MNT/attr/a
  assert_eq i "$(attr_token $MNT/attr/i)" "lsattr of the immutable file"
  assert_eq a "$(attr_token $MNT/attr/a)" "lsattr of the append-only file"
  local check='
import os, errno, mmap
M="'$MNT'/attr"
'"$REFUSED"'
refused("open(O_WRONLY) of an immutable file", lambda: os.open(M+"/i", os.O_WRONLY))
refused("truncate of an immutable file", lambda: os.truncate(M+"/i", 0))
refused("unlink of an immutable file", lambda: os.unlink(M+"/i"))
refused("rename of an immutable file", lambda: os.rename(M+"/i", M+"/i2"))
refused("link to an immutable file", lambda: os.link(M+"/i", M+"/i3"))
refused("chmod of an immutable file", lambda: os.chmod(M+"/i", 0o600))
assert open(M+"/i").read()=="data\n"
refused("open(O_WRONLY) without O_APPEND of an append-only file", lambda: os.open(M+"/a", os.O_WRONLY))
refused("truncate of an append-only file", lambda: os.truncate(M+"/a", 0))
refused("unlink of an append-only file", lambda: os.unlink(M+"/a"))
fd=os.open(M+"/a", os.O_RDWR|os.O_APPEND)
refused("a shared writable mapping of an append-only file", lambda: mmap.mmap(fd, 4), errno.EACCES)
os.write(fd, b"more\n"); os.fsync(fd); os.close(fd)
c=open(M+"/a").read()
assert c.startswith("log\nmore\n") and c.endswith("more\n") and len(c)>=9, c
'
  py "$check"
  assert_eq 5 "$(sb_version)" "superblock version (mkfs writes 5)"
  remount
  assert_eq i "$(attr_token $MNT/attr/i)" "lsattr of the immutable file after a remount"
  assert_eq a "$(attr_token $MNT/attr/a)" "lsattr of the append-only file after a remount"
  py "$check"
  chattr -i $MNT/attr/i; chattr -a $MNT/attr/a
  assert_eq "" "$(attr_token $MNT/attr/i)" "lsattr after chattr -i"
  rm $MNT/attr/i $MNT/attr/a
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? after chattr"
  mount -t ferrofs -o dax $DEV $MNT
}
t chattr_immutable_and_append_only_are_enforced_and_kept chattr_immutable_and_append_only_are_enforced_and_kept

# A version 1 image (before inode flags) mounts and works as it is; the
# first chattr flag raises it to version 2, which an older module refuses.
version_1_images_mount_and_the_first_flag_raises_them() {
  umount $MNT
  "$MKFS" -q -f $DEV
  "$FT" sbpatch $DEV version 1 --fix-csum >/dev/null
  assert_eq 1 "$(sb_version)" "version after sbpatch"
  mount -t ferrofs -o dax $DEV $MNT
  "$FT" fill $MNT/old 4 100000
  remount
  "$FT" verify $MNT/old 4 100000
  assert_eq 1 "$(sb_version)" "version after writes without flags"
  chattr +a $MNT/old
  assert_eq 2 "$(sb_version)" "version after the first chattr flag"
  chattr -a $MNT/old
  setfattr -n user.first -v 1 $MNT/old
  assert_eq 3 "$(sb_version)" "version after the first extended attribute"
  local n248 n249
  n248=$(printf 'a%.0s' $(seq 1 248)); n249=${n248}b
  touch $MNT/$n248
  assert_eq 3 "$(sb_version)" "version after a 248-byte name (one slot)"
  touch $MNT/$n249
  assert_eq 4 "$(sb_version)" "version after the first 249-byte name"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? on the raised image"
  mount -t ferrofs -o dax $DEV $MNT
  "$FT" verify $MNT/old 4 100000
  assert_eq 1 "$(getfattr --only-values -n user.first $MNT/old)" "the xattr after a remount"
  [ -e $MNT/$n249 ] && [ -e $MNT/$n248 ] || fail "the long names after a remount: $(ls $MNT)"
}
t version_1_images_mount_and_the_first_flag_raises_them version_1_images_mount_and_the_first_flag_raises_them

# Extended attributes: user., trusted. and security. names on files and
# directories, set, listed, read and removed with the errnos of xattr(7),
# counted in st_blocks, refused past one block (ENOSPC, the old ones kept),
# kept across a remount, freed with the file, and fsck clean.
xattrs_are_set_listed_read_removed_and_kept() {
  mkdir -p $MNT/xa/d
  echo data > $MNT/xa/f
  ln -s f $MNT/xa/l
  local check='
import os, errno, ctypes
M="'$MNT'/xa"
'"$REFUSED"'
f, d = M+"/f", M+"/d"
want = {
  f: {"user.a": b"1", "user.empty": b"", "user."+"n"*250: b"long name",
      "user.bin": bytes(range(256))*8, "trusted.t": b"T", "security.s": b"S"},
  d: {"user.dir": b"D"},
}
def check_all():
    for p, kv in want.items():
        assert sorted(os.listxattr(p)) == sorted(kv), (p, os.listxattr(p))
        for k, v in kv.items():
            assert os.getxattr(p, k) == v, (p, k)
check = check_all
'
  py "$check
import sys
for p, kv in want.items():
    for k, v in kv.items():
        os.setxattr(p, k, v)
check_all()
assert os.stat(f).st_blocks == 8 + 8, os.stat(f).st_blocks
refused('XATTR_CREATE of an existing name', lambda: os.setxattr(f, 'user.a', b'x', os.XATTR_CREATE), errno.EEXIST)
refused('XATTR_REPLACE of a missing name', lambda: os.setxattr(f, 'user.none', b'x', os.XATTR_REPLACE), errno.ENODATA)
refused('getxattr of a missing name', lambda: os.getxattr(f, 'user.none'), errno.ENODATA)
refused('removexattr of a missing name', lambda: os.removexattr(f, 'user.none'), errno.ENODATA)
refused('a name of 256 bytes', lambda: os.setxattr(f, 'user.'+'n'*251, b'x'), errno.ERANGE)
refused('user. names on a symlink', lambda: os.setxattr(M+'/l', 'user.a', b'x', follow_symlinks=False), errno.EPERM)
refused('an unknown namespace', lambda: os.setxattr(f, 'bogus.a', b'x'), errno.EOPNOTSUPP)
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(1)
assert libc.getxattr(f.encode(), b'user.a', buf, 1) == 1 and buf.raw == b'1'
assert libc.getxattr(f.encode(), b'user.bin', buf, 1) == -1 and ctypes.get_errno() == errno.ERANGE
assert libc.getxattr(f.encode(), b'user.bin', None, 0) == 2048
assert libc.listxattr(f.encode(), buf, 1) == -1 and ctypes.get_errno() == errno.ERANGE
os.setxattr(f, 'user.a', b'2', os.XATTR_REPLACE); want[f]['user.a'] = b'2'
# Past one block: refused, and nothing of the old set is lost.
refused('attributes past one block', lambda: os.setxattr(f, 'user.big', b'x'*2000), errno.ENOSPC)
check_all()
os.removexattr(f, 'user.empty'); del want[f]['user.empty']
check_all()
# An unprivileged user sees no trusted. names and may not set them, and
# may not set user. names on a file it may not write.
pid = os.fork()
if pid == 0:
    try:
        os.setgid(3001); os.setuid(3001)
        assert 'trusted.t' not in os.listxattr(f), os.listxattr(f)
        refused('trusted. by a user', lambda: os.setxattr(f, 'trusted.u', b'x'), errno.EPERM)
        refused('user. on a file of another', lambda: os.setxattr(f, 'user.u', b'x'), errno.EACCES)
        os._exit(0)
    except BaseException as e:
        print(e); os._exit(1)
_, st = os.waitpid(pid, 0)
assert st == 0, 'unprivileged checks failed'
"
  remount
  py "$check
del want[f]['user.empty']; want[f]['user.a'] = b'2'
check_all()
b0 = os.stat(M+'/d').st_blocks
for k in list(want[M+'/d']):
    os.removexattr(M+'/d', k)
assert os.listxattr(M+'/d') == []
assert b0 - os.stat(M+'/d').st_blocks == 8, (b0, os.stat(M+'/d').st_blocks)
"
  # The image the earlier tests left (raised from version 1 to 4, or a
  # fresh version 5 when run alone): at least the xattr version.
  [ "$(sb_version)" -ge 3 ] || fail "superblock version with xattrs: $(sb_version)"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? with xattrs"
  mount -t ferrofs -o dax $DEV $MNT
  # The file's data block and its xattr block come back when it goes.
  local free0
  free0=$(stat -f -c %f $MNT)
  rm $MNT/xa/f
  assert_eq "$((free0 + 2))" "$(stat -f -c %f $MNT)" "free blocks after removing a file with xattrs"
  rm -r $MNT/xa
}
t xattrs_are_set_listed_read_removed_and_kept xattrs_are_set_listed_read_removed_and_kept

# POSIX ACLs: an ACL entry grants what the mode does not, chmod changes the
# mask, a directory's default ACL is inherited by new files and
# directories (with the umask ignored, as POSIX says), an ACL that says no
# more than the mode bits becomes the mode, and all of it survives a
# remount.
acls_are_enforced_inherited_and_kept() {
  mkdir -p $MNT/acl/inherit
  echo secret > $MNT/acl/f
  chmod 0600 $MNT/acl/f
  local as_user='
import os, errno, sys
def try_open(p, flags):
    try:
        os.close(os.open(p, flags)); return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def as_user(fn):
    pid = os.fork()
    if pid == 0:
        os.setgid(3001); os.setuid(3001)
        print(fn()); sys.stdout.flush(); os._exit(0)
    os.waitpid(pid, 0)
'
  u() { py "$as_user
as_user(lambda: try_open('$1', os.$2))"; }
  assert_eq EACCES "$(u $MNT/acl/f O_RDONLY)" "read by another user without an ACL"
  setfacl -m u:3001:r $MNT/acl/f
  assert_eq ok "$(u $MNT/acl/f O_RDONLY)" "read granted by the ACL"
  assert_eq EACCES "$(u $MNT/acl/f O_WRONLY)" "write not granted by the ACL"
  getfacl -cn $MNT/acl/f | grep -qx 'user:3001:r--' || fail "getfacl: $(getfacl -cn $MNT/acl/f)"
  chmod 0600 $MNT/acl/f
  assert_eq EACCES "$(u $MNT/acl/f O_RDONLY)" "read after chmod 0600 masked the ACL"
  getfacl -cn $MNT/acl/f | grep -qx 'mask::---' || fail "mask after chmod: $(getfacl -cn $MNT/acl/f)"
  chmod 0640 $MNT/acl/f
  setfacl -d -m u:3001:rwx $MNT/acl/inherit
  (umask 077; echo x > $MNT/acl/inherit/new; mkdir $MNT/acl/inherit/sub)
  getfacl -cn $MNT/acl/inherit/new | grep -qx 'user:3001:rwx.*' || fail "inherited: $(getfacl -cn $MNT/acl/inherit/new)"
  getfacl -cn $MNT/acl/inherit/sub | grep -qx 'default:user:3001:rwx' || fail "inherited default: $(getfacl -cn $MNT/acl/inherit/sub)"
  assert_eq ok "$(u $MNT/acl/inherit/new O_RDONLY)" "read of an inherited ACL"
  # A minimal ACL is the mode: nothing stored.
  echo m > $MNT/acl/minimal
  setfacl -m u::rw,g::r,o::- $MNT/acl/minimal
  assert_eq "640" "$(stat -c %a $MNT/acl/minimal)" "mode set by a minimal ACL"
  assert_eq "" "$(getfattr -m - -d $MNT/acl/minimal 2>/dev/null)" "xattrs of a minimal ACL"
  local before after
  before=$(getfacl -Rcn $MNT/acl | sort | md5sum)
  remount
  after=$(getfacl -Rcn $MNT/acl | sort | md5sum)
  assert_eq "$before" "$after" "getfacl -R after a remount"
  assert_eq ok "$(u $MNT/acl/f O_RDONLY)" "read granted by the ACL after a remount"
  assert_eq ok "$(u $MNT/acl/inherit/new O_RDONLY)" "read of an inherited ACL after a remount"
  setfacl -b $MNT/acl/f
  assert_eq EACCES "$(u $MNT/acl/f O_RDONLY)" "read after setfacl -b"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? with ACLs"
  mount -t ferrofs -o dax $DEV $MNT
  rm -r $MNT/acl
}
t acls_are_enforced_inherited_and_kept acls_are_enforced_inherited_and_kept

# Device nodes, FIFOs and sockets (format version 3): created with their
# device numbers (also ones past 8 bits of major and minor), working (a
# character device node of /dev/null, a FIFO between two processes), with
# their type and number after a remount, freed by rm, and fsck clean.
special_files_are_created_kept_and_work() {
  local inodes0
  inodes0=$(stat -f -c %d $MNT)
  mkdir -p $MNT/sp
  mknod $MNT/sp/null c 1 3
  mknod $MNT/sp/big b 300 70000
  mkfifo $MNT/sp/fifo
  python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('$MNT/sp/sock')"
  local want='character special file 1 3
block special file 12c 11170
fifo 0 0
socket 0 0'
  local got
  got=$(stat -c '%F %t %T' $MNT/sp/null $MNT/sp/big $MNT/sp/fifo $MNT/sp/sock)
  assert_eq "$want" "$got" "types and device numbers"
  echo discarded > $MNT/sp/null
  assert_eq "" "$(cat $MNT/sp/null)" "reading the /dev/null node"
  (echo through-the-fifo > $MNT/sp/fifo &)
  assert_eq through-the-fifo "$(timeout 10 cat $MNT/sp/fifo)" "a FIFO between two processes"
  setfattr -n user.on-a-fifo -v 1 $MNT/sp/fifo 2>/dev/null && fail "user. xattr on a FIFO allowed"
  setfattr -n trusted.t -v 1 $MNT/sp/fifo
  remount
  got=$(stat -c '%F %t %T' $MNT/sp/null $MNT/sp/big $MNT/sp/fifo $MNT/sp/sock)
  assert_eq "$want" "$got" "types and device numbers after a remount"
  assert_eq 1 "$(getfattr --only-values -n trusted.t $MNT/sp/fifo)" "a FIFO's trusted. xattr after a remount"
  assert_eq 0 "$(stat -c %s $MNT/sp/null)" "size of a device node"
  echo discarded > $MNT/sp/null
  [ "$(sb_version)" -ge 3 ] || fail "superblock version with special files: $(sb_version)"
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? with special files"
  mount -t ferrofs -o dax $DEV $MNT
  rm -r $MNT/sp
  assert_eq "$inodes0" "$(stat -f -c %d $MNT)" "free inodes after rm"
}
t special_files_are_created_kept_and_work special_files_are_created_kept_and_work

umount $MNT
