#!/usr/bin/env python3
"""Craft journal states on a ferrofs device, for tests/45-journal.sh.

  jcraft.py DEV unlink-undone NAME  simulate a crash inside `unlink NAME` of
      a file in the root directory: the slot is cleared in place and the
      undo record is in the journal, the commit never happened
  jcraft.py DEV corrupt-header      a journal header with a bad magic
  jcraft.py DEV seq                 print seq_done

Layouts are those of src/format.rs (superblock fields, 256-byte inodes and
directory slots, the journal's header and records).
"""
import struct
import sys

BS = 4096


def record_check(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return (h ^ (h >> 32)) & 0xFFFFFFFF


def main():
    dev, cmd = sys.argv[1], sys.argv[2]
    with open(dev, "r+b") as f:
        sb = f.read(512)
        journal_start = struct.unpack_from("<Q", sb, 32)[0] * BS
        itable = struct.unpack_from("<Q", sb, 64)[0] * BS
        f.seek(journal_start)
        head = f.read(64)
        magic, seq_done = head[:8], struct.unpack_from("<Q", head, 8)[0]
        if cmd == "seq":
            print(seq_done)
        elif cmd == "corrupt-header":
            f.seek(journal_start)
            f.write(b"GARBAGE!")
        elif cmd == "unlink-undone":
            name = sys.argv[3].encode()
            f.seek(itable + 72)  # root inode (1), direct[0]
            dirblock = struct.unpack("<I", f.read(4))[0] * BS
            f.seek(dirblock)
            block = f.read(BS)
            for s in range(16):
                slot = block[s * 256:(s + 1) * 256]
                ino, nlen = struct.unpack_from("<IB", slot)
                if ino and slot[8:8 + nlen] == name:
                    break
            else:
                sys.exit(f"{name!r} not in the root's first block")
            target = dirblock + s * 256
            old = struct.pack("<I", ino)
            seq = seq_done + 1
            hdr = struct.pack("<QQI", seq, target, len(old))
            crc = record_check(hdr + old)
            if magic != b"FERROJNL":
                f.seek(journal_start)
                f.write(b"FERROJNL" + struct.pack("<Q", seq_done))
            f.seek(journal_start + 64)
            f.write(hdr + struct.pack("<I", crc) + old + b"\0" * 4)
            f.seek(target)
            f.write(b"\0" * 4)  # the in-place store of the unlink
            print(f"slot {s} of block {dirblock // BS} cleared, undo record for transaction {seq}")
        else:
            sys.exit(f"unknown command {cmd}")


main()
