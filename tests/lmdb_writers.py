#!/usr/bin/python3
"""LMDB with several writer processes on one environment (tests/25-gup.sh).

  lmdb_writers.py write  DIR [--procs N] [--records K] [--writemap]
  lmdb_writers.py verify DIR [--procs N] [--records K]

write: N processes (forked before any of them opens the environment, as
LMDB requires) each open DIR (map_size 64 MiB, lock=True) and put K records
b'p<i>-<k>' in small transactions (10 puts each, every commit synced). LMDB
keeps its writer mutex and reader table as PTHREAD_PROCESS_SHARED robust
mutexes in lock.mdb, a MAP_SHARED mapping: contention between the writers
goes through shared futexes. Every writer must exit 0 within the time limit.

verify: opens DIR again and checks that it holds exactly the N*K records,
each with its value.

Exit status: 0 ok, 1 failure (reason on stdout), 4 skip (no python3-lmdb).
Use Debian's /usr/bin/python3 (python3-lmdb); a pyenv python has no lmdb.
"""
import argparse
import os
import signal
import sys
import time

try:
    import lmdb
except ImportError as e:
    print(f"python3-lmdb missing for {sys.executable}: {e}")
    sys.exit(4)

MAP_SIZE = 64 << 20
BATCH = 10
TIME_LIMIT = 240  # seconds for all writers (TCG is slow; normally a few s)


def key(i, k):
    return b"p%d-%d" % (i, k)


def value(i, k):
    return b"v%d-%d:" % (i, k) + bytes([(i * 31 + k) & 0xFF]) * (k % 97 + 1)


def writer(path, i, records, writemap):
    env = lmdb.open(path, map_size=MAP_SIZE, lock=True, writemap=writemap,
                    max_readers=64)
    for start in range(0, records, BATCH):
        with env.begin(write=True) as txn:
            for k in range(start, min(start + BATCH, records)):
                txn.put(key(i, k), value(i, k))
        # A read transaction too: the reader table is shared as well.
        with env.begin() as txn:
            got = txn.get(key(i, start))
            if got != value(i, start):
                raise RuntimeError(f"read back {key(i, start)!r}: {got!r}")
    env.close()


def describe(st):
    if os.WIFSIGNALED(st):
        sig = os.WTERMSIG(st)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exited with status {os.WEXITSTATUS(st)}"


def write(path, procs, records, writemap):
    pids = []
    for i in range(procs):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                writer(path, i, records, writemap)
            except Exception as e:  # any failure is the child's result
                print(f"writer {i}: {type(e).__name__}: {e}", flush=True)
                code = 1
            os._exit(code)
        pids.append(pid)
    t0 = time.monotonic()
    ends = {}
    while len(ends) < len(pids) and time.monotonic() - t0 < TIME_LIMIT:
        for i, pid in enumerate(pids):
            if i in ends:
                continue
            r, st = os.waitpid(pid, os.WNOHANG)
            if r == pid:
                ends[i] = describe(st)
        time.sleep(0.02)
    bad = []
    for i, pid in enumerate(pids):
        if i not in ends:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            bad.append(f"writer {i}: still running after {TIME_LIMIT} s, killed")
        elif ends[i] != "exited with status 0":
            bad.append(f"writer {i}: {ends[i]}")
    took = time.monotonic() - t0
    if bad:
        print(f"{len(bad)} of {procs} writers failed: " + "; ".join(bad))
        return False
    print(f"{procs} writers x {records} records (writemap={writemap}): {took:.1f} s")
    return True


def verify(path, procs, records):
    env = lmdb.open(path, map_size=MAP_SIZE, lock=True, max_readers=64)
    want = {key(i, k): value(i, k) for i in range(procs) for k in range(records)}
    missing, wrong, extra = 0, 0, 0
    first = []
    with env.begin() as txn:
        seen = set()
        for k, v in txn.cursor():
            seen.add(k)
            if k not in want:
                extra += 1
                if len(first) < 3:
                    first.append(f"unexpected key {k!r}")
            elif v != want[k]:
                wrong += 1
                if len(first) < 3:
                    first.append(f"{k!r}: value {v[:24]!r}..., expected {want[k][:24]!r}...")
        for k in want:
            if k not in seen:
                missing += 1
                if len(first) < 3:
                    first.append(f"missing {k!r}")
    env.close()
    if missing or wrong or extra:
        print(f"expected {len(want)} records: {missing} missing, {wrong} wrong, "
              f"{extra} unexpected; " + "; ".join(first))
        return False
    print(f"all {len(want)} records present with their values")
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["write", "verify"])
    ap.add_argument("dir")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--records", type=int, default=500)
    ap.add_argument("--writemap", action="store_true")
    a = ap.parse_args()
    if a.cmd == "write":
        ok = write(a.dir, a.procs, a.records, a.writemap)
    else:
        ok = verify(a.dir, a.procs, a.records)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
