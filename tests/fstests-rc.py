#!/usr/bin/python3
# Part of `make fstests` (tests/fstests-guest.sh runs it on the guest's copy
# of the fstests tree). fstests' common/rc knows each file system's mkfs by
# name in two helpers, and ferrofs is not (yet) one of them upstream; this
# adds a `ferrofs)` case to each, as upstream has for ext4 and xfs:
#  - _try_scratch_mkfs_sized: mkfs.ferrofs takes -b 4096 and a block count
#    (any other block size is refused, so such a test is "not run").
#  - _scratch_mkfs_geom: ferrofs has no stripe options; its allocation
#    groups are 2 MiB aligned on the device, so a stripe unit that divides
#    2 MiB or is a multiple of it (generic/413 asks for the huge page size)
#    is what every ferrofs image already has. Others are "not run".
# Idempotent; if an anchor is missing (another fstests version) it says so
# and leaves the file, and those tests are "not run" as before.
import sys

path = sys.argv[1]
s = open(path).read()
if "ferrofs)" in s:
    sys.exit(0)

sized_anchor = '\t*)\n\t\t_notrun "Filesystem $FSTYP not supported in _scratch_mkfs_sized"'
sized_case = ('\tferrofs)\n'
              '\t\t${MKFS_PROG} -t $FSTYP -f -q $MKFS_OPTIONS -b $blocksize "$@" $SCRATCH_DEV $blocks\n'
              '\t\t;;\n')
geom_anchor = '    *)\n\t_notrun "can\'t mkfs $FSTYP with geometry"'
geom_case = ('    ferrofs)\n'
             '\tlocal group=$((2 * 1024 * 1024))\n'
             '\tif [ "$blocksize" != 4096 ] || [ $((sunit_bytes * swidth_mult % group)) != 0 -a $((group % (sunit_bytes * swidth_mult))) != 0 ]; then\n'
             '\t\t_notrun "ferrofs: 4096-byte blocks and 2 MiB aligned groups only (asked: $blocksize, $sunit_bytes x $swidth_mult)"\n'
             '\tfi\n'
             '\t;;\n')
ok = True
for name, anchor, case in (("_try_scratch_mkfs_sized", sized_anchor, sized_case),
                           ("_scratch_mkfs_geom", geom_anchor, geom_case)):
    if s.count(anchor) != 1:
        print(f"fstests-rc: {name}: anchor not found once in {path}; left as it is")
        ok = False
        continue
    s = s.replace(anchor, case + anchor)
open(path, "w").write(s)
print("fstests-rc: added ferrofs cases to common/rc" + ("" if ok else " (some)"))
