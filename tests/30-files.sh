#!/bin/bash
# Files and directories: every operation checked by what reads back, also
# after a remount.
source "$(dirname "$0")/lib.sh"
load_module
fresh_mount
py() { python3 -c "$1"; }

files_and_tree_survive_remount() {
  mkdir -p $MNT/a/b/c
  "$FT" fill $MNT/a/empty 1 0
  "$FT" fill $MNT/a/b/small 2 5000
  "$FT" fill $MNT/a/b/c/big 3 3145728
  remount
  "$FT" verify $MNT/a/empty 1 0
  "$FT" verify $MNT/a/b/small 2 5000
  "$FT" verify $MNT/a/b/c/big 3 3145728
  assert_eq "5000" "$(stat -c %s $MNT/a/b/small)" "size"
  assert_eq "16" "$(stat -c %b $MNT/a/b/small)" "blocks (512 B) of a 5000-byte file"
}
open_flags_excl_trunc_append() {
  py "
import os, errno
p='$MNT/flags'
fd=os.open(p, os.O_CREAT|os.O_EXCL|os.O_WRONLY, 0o640); os.write(fd, b'abcdef'); os.close(fd)
try:
    os.open(p, os.O_CREAT|os.O_EXCL|os.O_WRONLY); raise SystemExit('O_EXCL on an existing file succeeded')
except FileExistsError: pass
fd=os.open(p, os.O_WRONLY|os.O_APPEND); os.lseek(fd, 0, 0); os.write(fd, b'XY'); os.close(fd)
assert open(p,'rb').read()==b'abcdefXY', open(p,'rb').read()
fd=os.open(p, os.O_WRONLY|os.O_TRUNC); os.close(fd)
assert os.stat(p).st_size==0, os.stat(p).st_size
assert oct(os.stat(p).st_mode & 0o777)=='0o640', oct(os.stat(p).st_mode)
"
}
pread_pwrite_lseek() {
  py "
import os
fd=os.open('$MNT/pio', os.O_CREAT|os.O_RDWR)
os.pwrite(fd, b'hello', 10000)
assert os.pread(fd, 5, 10000)==b'hello'
assert os.pread(fd, 10, 0)==bytes(10), 'hole did not read as zeros'
assert os.lseek(fd, 0, os.SEEK_END)==10005
os.lseek(fd, 4096, os.SEEK_SET); os.write(fd, b'X'*8192)
assert os.pread(fd, 8192, 4096)==b'X'*8192
assert os.pread(fd, 100, 20000)==b'', 'read past EOF returned data'
os.close(fd)
"
}
ftruncate_up_reads_zeros_and_down_frees_blocks() {
  py "
import os
p='$MNT/trunc'
open(p,'wb').write(b'A'*10000)
b0=os.stat(p).st_blocks
os.truncate(p, 100000)
d=open(p,'rb').read()
assert d[:10000]==b'A'*10000 and d[10000:]==bytes(90000), 'extension is not zeros'
assert os.stat(p).st_blocks==b0, ('truncate up allocated', b0, os.stat(p).st_blocks)
os.truncate(p, 5000)
assert os.stat(p).st_blocks==16, os.stat(p).st_blocks
os.truncate(p, 9000)
d=open(p,'rb').read()
assert d==b'A'*5000+bytes(4000), 'bytes past the truncation point came back'
"
  remount
  assert_eq 9000 "$(stat -c %s $MNT/trunc)" "size after remount"
}
sparse_file_reads_zeros_and_allocates_only_written_blocks() {
  dd if=/dev/urandom of=$MNT/sparse bs=4096 seek=1000 count=1 status=none
  assert_eq 4100096 "$(stat -c %s $MNT/sparse)" "size"
  assert_eq 16 "$(stat -c %b $MNT/sparse)" "blocks (one data block and one indirect block)"
  cmp -n 4096000 $MNT/sparse /dev/zero || fail "hole is not zeros"
}
unlink_while_open_keeps_data_until_last_close() {
  py "
import os
p='$MNT/doomed'
def free(): s=os.statvfs('$MNT'); return s.f_bfree
f0=free()
fd=os.open(p, os.O_CREAT|os.O_RDWR); os.write(fd, b'Z'*(1<<20))
f1=free(); assert f0-f1>=256, (f0,f1)
os.unlink(p)
assert not os.path.exists(p)
assert os.pread(fd, 1<<20, 0)==b'Z'*(1<<20), 'data gone while open'
os.pwrite(fd, b'Q', 5)
assert free()==f1, ('blocks freed while still open', f1, free())
os.close(fd)
assert free()>=f0, ('blocks not freed at last close', f0, free())
"
}
mkdir_rmdir_readdir_and_link_counts() {
  mkdir $MNT/d; mkdir $MNT/d/sub1 $MNT/d/sub2; touch $MNT/d/file; ln -s file $MNT/d/link
  assert_eq 4 "$(stat -c %h $MNT/d)" "nlink of a dir with 2 subdirs"
  py "
import os
got={e.name:(e.is_dir(follow_symlinks=False), e.is_symlink(), e.is_file(follow_symlinks=False)) for e in os.scandir('$MNT/d')}
want={'sub1':(True,False,False),'sub2':(True,False,False),'file':(False,False,True),'link':(False,True,False)}
assert got==want, got
assert sorted(os.listdir('$MNT/d/sub1'))==[]
import subprocess
out=subprocess.run(['ls','-a','$MNT/d/sub1'],capture_output=True,text=True).stdout.split()
assert out==['.','..'], out
"
  if rmdir $MNT/d 2>/tmp/err; then fail "rmdir of a non-empty dir succeeded"; fi
  grep -q "not empty" /tmp/err || fail "$(cat /tmp/err)"
  rmdir $MNT/d/sub1
  assert_eq 3 "$(stat -c %h $MNT/d)" "nlink after rmdir"
  remount
  assert_eq 3 "$(stat -c %h $MNT/d)" "nlink after remount"
  [ -d $MNT/d/sub2 ] && [ ! -e $MNT/d/sub1 ] || fail "tree wrong after remount"
}
many_entries_in_one_directory() {
  mkdir $MNT/many
  for i in $(seq 1 300); do echo $i > $MNT/many/file-$i; done
  assert_eq 300 "$(ls $MNT/many | wc -l)" "entries"
  for i in $(seq 1 2 300); do rm $MNT/many/file-$i; done
  remount
  assert_eq 150 "$(ls $MNT/many | wc -l)" "entries after deleting half and remounting"
  assert_eq 150 "$(cat $MNT/many/file-150)" "content"
}
rename_within_across_and_replacing() {
  mkdir -p $MNT/r1 $MNT/r2/sub; echo one > $MNT/r1/a; echo two > $MNT/r2/b; echo three > $MNT/r1/c
  mv $MNT/r1/a $MNT/r1/a2                     # same directory
  mv $MNT/r1/a2 $MNT/r2/a3                    # across directories
  mv -f $MNT/r1/c $MNT/r2/b                   # replace a file
  assert_eq three "$(cat $MNT/r2/b)" "replaced target"
  [ ! -e $MNT/r1/c ] && [ ! -e $MNT/r1/a ] || fail "old names remain"
  mkdir $MNT/r1/empty
  mv -T $MNT/r2/sub $MNT/r1/empty              # replace an empty dir with a dir
  mkdir $MNT/r1/full; touch $MNT/r1/full/x; mkdir $MNT/r2/d
  if mv -T $MNT/r2/d $MNT/r1/full 2>/dev/null; then fail "rename over a non-empty dir succeeded"; fi
  mkdir $MNT/r2/moving
  assert_eq 4 "$(stat -c %h $MNT/r2)" "r2 nlink before moving a dir out"
  mv $MNT/r2/moving $MNT/r1/
  assert_eq 3 "$(stat -c %h $MNT/r2)" "r2 nlink after"
  assert_eq 5 "$(stat -c %h $MNT/r1)" "r1 nlink after"
  assert_eq "$(stat -c %i $MNT/r1)" "$(stat -c %i $MNT/r1/moving/..)" "'..' of a moved directory"
  py "
import os
try:
    os.rename('$MNT/r2/a3', '$MNT/r2/b') ; assert open('$MNT/r2/b').read()=='one\n'
    import ctypes; libc=ctypes.CDLL(None, use_errno=True)
    open('$MNT/r2/nr','w').close()
    r=libc.renameat2(-100, b'$MNT/r2/b', -100, b'$MNT/r2/nr', 1)
    assert r==-1 and ctypes.get_errno()==17, ('RENAME_NOREPLACE over an existing name', r, ctypes.get_errno())
except AttributeError: pass
"
  remount
  assert_eq one "$(cat $MNT/r2/b)" "after remount"
  [ -d $MNT/r1/moving ] && [ -d $MNT/r1/empty ] || fail "moved dirs missing after remount"
}
hard_links_share_data_and_count() {
  echo data > $MNT/h1; ln $MNT/h1 $MNT/h2; mkdir -p $MNT/hd; ln $MNT/h1 $MNT/hd/h3
  assert_eq 3 "$(stat -c %h $MNT/h1)" "nlink"
  echo more >> $MNT/h2
  assert_eq "$(printf 'data\nmore')" "$(cat $MNT/hd/h3)" "content through another link"
  rm $MNT/h1
  remount
  assert_eq 2 "$(stat -c %h $MNT/h2)" "nlink after unlink and remount"
  assert_eq "$(stat -c %i $MNT/h2)" "$(stat -c %i $MNT/hd/h3)" "same inode"
}
symlinks_resolve_and_survive_remount() {
  echo target > $MNT/st; ln -s st $MNT/sl; ln -s /mnt/test/st $MNT/sl-abs
  long=$(printf 'x%.0s' $(seq 1 1000)); ln -s "$long" $MNT/sl-long
  remount
  assert_eq st "$(readlink $MNT/sl)" "readlink"
  assert_eq target "$(cat $MNT/sl-abs)" "follow"
  assert_eq "$long" "$(readlink $MNT/sl-long)" "1000-byte target"
  assert_eq 1000 "$(stat -c %s $MNT/sl-long)" "symlink size"
}
chmod_chown_utimes_and_stat() {
  touch $MNT/meta
  chown 1234:5678 $MNT/meta; chmod 4751 $MNT/meta; touch -d '2001-02-03 04:05:06.123456789' $MNT/meta
  remount
  assert_eq "4751 1234 5678" "$(stat -c '%a %u %g' $MNT/meta)" "mode uid gid"
  assert_eq "2001-02-03 04:05:06.123456789" "$(stat -c %y $MNT/meta | cut -c1-29)" "mtime"
  before=$(stat -c %Z $MNT/meta); sleep 1.1; chmod 600 $MNT/meta
  [ "$(stat -c %Z $MNT/meta)" -gt "$before" ] || fail "chmod did not update ctime"
}
statfs_reports_real_free_space() {
  # A directory that already has a block, so only the file's blocks count.
  mkdir $MNT/sf; touch $MNT/sf/placeholder
  py "
import os
def s(): v=os.statvfs('$MNT'); return v.f_bfree, v.f_bsize, v.f_namemax
f0,bs,nm=s()
assert bs==4096 and nm==255, (bs,nm)
open('$MNT/sf/ten','wb').write(b'1'*(10<<20))
f1,_,_=s()
assert 2560 <= f0-f1 <= 2570, ('free blocks did not drop by 10 MiB', f0, f1)
os.unlink('$MNT/sf/ten')
assert s()[0]==f0, ('space not returned', f0, s()[0])
"
  df -k $MNT | tail -1 | awk '{ if ($2 < 1000000 || $2 > 1048576) exit 1 }' || fail "df size: $(df -k $MNT)"
}
name_too_long_is_rejected() {
  long=$(printf 'n%.0s' $(seq 1 256))
  if touch $MNT/$long 2>/tmp/err; then fail "256-byte name accepted"; fi
  grep -q "too long" /tmp/err || fail "$(cat /tmp/err)"
  touch $MNT/${long:1}
  [ -e $MNT/${long:1} ] || fail "255-byte name not found"
}
# Names of 249 to 255 bytes take two directory slots (format version 4):
# create, lookup, readdir, rename, link, unlink, mkdir and symlink, mixed
# with short names so that slots are reused and long names cannot fit in
# every gap; across a remount, and clean in fsck.
long_names_up_to_255_bytes() {
  python3 - $MNT/ln <<'PY'
import os, sys, random
D = sys.argv[1]; os.mkdir(D)
rnd = random.Random(5)
def nm(n, tag): return (tag + 'x' * n)[:n]
want = {}
for i in range(60):
    n = rnd.choice([1, 30, 247, 248, 249, 250, 254, 255])
    name = nm(n, f'{i:03d}-')
    open(os.path.join(D, name), 'w').write(str(i)); want[name] = str(i)
    if i % 3 == 0:                     # free slots between entries
        victim = rnd.choice(sorted(want)); os.unlink(os.path.join(D, victim)); del want[victim]
for name in sorted(want)[:10]:         # renames to and from long names
    new = nm(255 if len(name) < 249 else 17, 'r' + name[:3] + '-')
    os.rename(os.path.join(D, name), os.path.join(D, new)); want[new] = want.pop(name)
long = [n for n in want if len(n) > 248][0]
os.link(os.path.join(D, long), os.path.join(D, nm(252, 'hardlink-')))
want[nm(252, 'hardlink-')] = want[long]
os.mkdir(os.path.join(D, nm(255, 'dir-')))
os.symlink(nm(255, 'target-'), os.path.join(D, nm(251, 'sym-')))
got = set(os.listdir(D))
exp = set(want) | {nm(255, 'dir-'), nm(251, 'sym-')}
assert got == exp, (sorted(got ^ exp))
for n, v in want.items():
    assert open(os.path.join(D, n)).read() == v, n
open('/tmp/ln-want', 'w').write(repr(sorted(want.items())))
PY
  remount
  python3 - $MNT/ln <<'PY'
import os, sys
D = sys.argv[1]
want = dict(eval(open('/tmp/ln-want').read()))
got = set(os.listdir(D))
exp = set(want) | {('dir-' + 'x' * 255)[:255], ('sym-' + 'x' * 251)[:251]}
assert got == exp, sorted(got ^ exp)
for n, v in want.items():
    assert open(os.path.join(D, n)).read() == v, n
assert os.readlink(os.path.join(D, ('sym-' + 'x' * 251)[:251])) == ('target-' + 'x' * 255)[:255]
PY
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? with long names"
  mount -t ferrofs -o dax $DEV $MNT
  python3 - $MNT/ln <<'PY'
import os, sys
D = sys.argv[1]
want = dict(eval(open('/tmp/ln-want').read()))
for n in list(want):
    os.unlink(os.path.join(D, n))
os.rmdir(os.path.join(D, ('dir-' + 'x' * 255)[:255]))
os.unlink(os.path.join(D, ('sym-' + 'x' * 251)[:251]))
assert os.listdir(D) == []
os.rmdir(D)
PY
  umount $MNT
  "$BIN/fsck-ferrofs" -n $DEV >/dev/null || fail "fsck-ferrofs exit $? after removing the long names"
  mount -t ferrofs -o dax $DEV $MNT
}
fallocate_keep_size_and_punch_hole() {
  fallocate -l 1M $MNT/fa
  assert_eq 1048576 "$(stat -c %s $MNT/fa)" "size after fallocate"
  assert_eq 2056 "$(stat -c %b $MNT/fa)" "blocks after fallocate (256 data + 1 indirect)"
  fallocate -n -o 1M -l 1M $MNT/fa
  assert_eq 1048576 "$(stat -c %s $MNT/fa)" "size after KEEP_SIZE"
  "$FT" fill $MNT/fp 7 65536
  fallocate -p -o 4096 -l 16384 $MNT/fp
  assert_eq 65536 "$(stat -c %s $MNT/fp)" "size after punch"
  assert_eq 104 "$(stat -c %b $MNT/fp)" "blocks after punching 4 of 16 data blocks (+1 indirect)"
  cmp -s -i 4096:0 -n 16384 $MNT/fp /dev/zero || fail "punched range is not zeros"
  fallocate -p -o 100 -l 50 $MNT/fp
  cmp -s -i 100:0 -n 50 $MNT/fp /dev/zero || fail "partial punch is not zeros"
  if fallocate -c -o 0 -l 4096 $MNT/fp 2>/dev/null; then fail "COLLAPSE_RANGE accepted"; fi
}
# FALLOC_FL_ZERO_RANGE: the range reads as zeros (also through a mapping
# made before), has blocks, and the size grows unless KEEP_SIZE; the rest
# of the file keeps its bytes, across a remount.
fallocate_zero_range() {
  python3 - $MNT/fz <<'PY'
import mmap, os, sys
f = sys.argv[1]
fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b'\xff' * 16384)
m = mmap.mmap(fd, 16384)
assert m[5000] == 0xff
os.close(fd)
PY
  fallocate -z -o 1000 -l 9000 $MNT/fz
  assert_eq 16384 "$(stat -c %s $MNT/fz)" "size after an inner ZERO_RANGE"
  cmp -s -i 1000:0 -n 9000 $MNT/fz /dev/zero || fail "zeroed range is not zeros"
  python3 -c "
import mmap, os
fd = os.open('$MNT/fz', os.O_RDWR); m = mmap.mmap(fd, 16384)
assert m[999] == 0xff and m[1000] == 0 and m[9999] == 0 and m[10000] == 0xff, (m[999], m[1000], m[9999], m[10000])
assert m[:1000] == b'\xff' * 1000 and m[10000:] == b'\xff' * 6384
"
  assert_eq 32 "$(stat -c %b $MNT/fz)" "blocks after an inner ZERO_RANGE (4 data blocks, all allocated)"
  fallocate -z -o 14000 -l 10000 $MNT/fz
  assert_eq 24000 "$(stat -c %s $MNT/fz)" "size after a ZERO_RANGE past the end"
  cmp -s -i 14000:0 -n 10000 $MNT/fz /dev/zero || fail "zeroed tail is not zeros"
  cmp -s -i 10000:0 -n 4000 $MNT/fz <(head -c 4000 /dev/zero | tr '\0' '\377') || fail "bytes before the zeroed tail changed"
  fallocate -z -n -o 24576 -l 8192 $MNT/fz
  assert_eq 24000 "$(stat -c %s $MNT/fz)" "size after a KEEP_SIZE ZERO_RANGE"
  assert_eq 64 "$(stat -c %b $MNT/fz)" "blocks after a KEEP_SIZE ZERO_RANGE (8 data blocks)"
  remount
  assert_eq 24000 "$(stat -c %s $MNT/fz)" "size after remount"
  cmp -s -i 1000:0 -n 9000 $MNT/fz /dev/zero || fail "zeroed range after remount"
  cmp -s -n 1000 $MNT/fz <(head -c 1000 /dev/zero | tr '\0' '\377') || fail "head after remount"
}
enospc_then_delete_and_reuse() {
  fresh_mount $DEV2 /mnt/scratch
  free=$(stat -f -c %f /mnt/scratch)
  if fallocate -l $(( (free + 100) * 4096 )) /mnt/scratch/hog 2>/tmp/err; then fail "over-allocation succeeded"; fi
  grep -q "No space" /tmp/err || fail "$(cat /tmp/err)"
  rm -f /mnt/scratch/hog
  fallocate -l $(( (free - 300) * 4096 )) /mnt/scratch/hog
  if dd if=/dev/zero of=/mnt/scratch/over bs=1M count=4 status=none 2>/tmp/err; then fail "write past full succeeded"; fi
  grep -q "No space" /tmp/err || fail "$(cat /tmp/err)"
  rm /mnt/scratch/hog /mnt/scratch/over
  "$FT" fill /mnt/scratch/after 9 1048576
  umount /mnt/scratch; mount -t ferrofs /dev/pmem1 /mnt/scratch
  "$FT" verify /mnt/scratch/after 9 1048576
  assert_eq "$free" "$(( $(stat -f -c %f /mnt/scratch) + 257 ))" "free blocks after delete and reuse (1 MiB = 256 data + 1 indirect)"
  umount /mnt/scratch
}
mmap_stores_survive_remount_with_each_sync() {
  for s in msync fsync none; do "$FT" mmap-fill $MNT/mm-$s 11 300000 --sync=$s; done
  remount
  for s in msync fsync none; do "$FT" verify $MNT/mm-$s 11 300000; done
}

t files_and_tree_survive_remount files_and_tree_survive_remount
t open_flags_excl_trunc_append open_flags_excl_trunc_append
t pread_pwrite_lseek pread_pwrite_lseek
t ftruncate_up_reads_zeros_and_down_frees_blocks ftruncate_up_reads_zeros_and_down_frees_blocks
t sparse_file_reads_zeros_and_allocates_only_written_blocks sparse_file_reads_zeros_and_allocates_only_written_blocks
t unlink_while_open_keeps_data_until_last_close unlink_while_open_keeps_data_until_last_close
t mkdir_rmdir_readdir_and_link_counts mkdir_rmdir_readdir_and_link_counts
t many_entries_in_one_directory many_entries_in_one_directory
t rename_within_across_and_replacing rename_within_across_and_replacing
t hard_links_share_data_and_count hard_links_share_data_and_count
t symlinks_resolve_and_survive_remount symlinks_resolve_and_survive_remount
t chmod_chown_utimes_and_stat chmod_chown_utimes_and_stat
t statfs_reports_real_free_space statfs_reports_real_free_space
t name_too_long_is_rejected name_too_long_is_rejected
t long_names_up_to_255_bytes long_names_up_to_255_bytes
t fallocate_keep_size_and_punch_hole fallocate_keep_size_and_punch_hole
t fallocate_zero_range fallocate_zero_range
t enospc_then_delete_and_reuse enospc_then_delete_and_reuse
t mmap_stores_survive_remount_with_each_sync mmap_stores_survive_remount_with_each_sync
umount $MNT

# Everything above, as the module left it on the medium, checked by fsck.
fsck_finds_the_image_consistent_after_the_workload() {
  "$BIN/fsck-ferrofs" -n $DEV || fail "fsck-ferrofs exit $?"
}
t fsck_finds_the_image_consistent_after_the_workload fsck_finds_the_image_consistent_after_the_workload
