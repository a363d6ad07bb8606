#!/usr/bin/env python3
"""Write summary.md of a `make fstests` run (scripts/fstests.sh).

Reads DIR/status (lines `FSTYP TEST STATUS SECONDS [FSTESTS_SECONDS]`, from
tests/fstests-guest.sh) and the .notrun files, and writes DIR/summary.md:
totals per file system, the time ratio against the first reference, a row per
test, and the tests a reference passes that ferrofs does not.
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--fstyps", required=True)
    ap.add_argument("--tests", required=True)
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--boots", type=int, default=1)
    a = ap.parse_args()
    fstyps = a.fstyps.split()
    tests = a.tests.split()
    res = {}  # (fs, test) -> (status, secs, own)
    try:
        with open(os.path.join(a.dir, "status")) as f:
            for line in f:
                p = line.split()
                if len(p) < 4:
                    continue
                own = int(p[4]) if len(p) > 4 and p[4].isdigit() else None
                res[(p[0], p[1])] = (p[2], int(p[3]), own)
    except FileNotFoundError:
        pass

    def notrun_reason(fs, t):
        try:
            with open(os.path.join(a.dir, fs, t + ".notrun")) as f:
                return f.read().strip().replace("|", "/")[:90]
        except OSError:
            return ""

    out = []
    out.append("# fstests: " + ", ".join(fstyps))
    out.append("")
    out.append(f"{len(tests)} tests, -o dax, TEST_DEV /dev/pmem0, SCRATCH_DEV /dev/pmem1 (1 GiB each); "
               f"{a.boots} guest boot(s), {a.seconds} s in all.")
    out.append("")
    out.append("| file system | ran | passed | failed | not run | hung/died | missing | seconds per test run |")
    out.append("|---|---|---|---|---|---|---|---|")
    for fs in fstyps:
        c = {"pass": 0, "fail": 0, "notrun": 0, "hung": 0, "missing": 0}
        secs = []
        for t in tests:
            st = res.get((fs, t))
            if st is None:
                c["missing"] += 1
                continue
            k = st[0] if st[0] in c else "hung"
            c[k] += 1
            if st[0] in ("pass", "fail"):
                secs.append(st[1])
        ran = c["pass"] + c["fail"]
        mean = f"{sum(secs) / len(secs):.1f}" if secs else "-"
        out.append(f"| {fs} | {ran} | {c['pass']} | {c['fail']} | {c['notrun']} | {c['hung']} | "
                   f"{c['missing']} | {mean} |")
    out.append("")
    # Time ratio on the tests that ran on both.
    if "ferrofs" in fstyps:
        for ref in fstyps:
            if ref == "ferrofs":
                continue
            both = [t for t in tests
                    if res.get(("ferrofs", t), ("",))[0] in ("pass", "fail")
                    and res.get((ref, t), ("",))[0] in ("pass", "fail")]
            if not both:
                continue
            fsum = sum(res[("ferrofs", t)][1] for t in both)
            rsum = sum(res[(ref, t)][1] for t in both)
            worst = max(both, key=lambda t: res[("ferrofs", t)][1] / max(res[(ref, t)][1], 1))
            out.append(f"Time, on the {len(both)} tests that ran on both: ferrofs {fsum} s, {ref} {rsum} s, "
                       f"ratio {fsum / max(rsum, 1):.2f}; worst single test {worst} "
                       f"({res[('ferrofs', worst)][1]} s vs {res[(ref, worst)][1]} s).")
            lost = [t for t in tests if res.get((ref, t), ("",))[0] == "pass"
                    and res.get(("ferrofs", t), ("",))[0] != "pass"]
            out.append("")
            if lost:
                out.append(f"Passed on {ref}, not on ferrofs: " + ", ".join(
                    f"{t} ({res.get(('ferrofs', t), ('missing',))[0]})" for t in lost) + ".")
            else:
                out.append(f"ferrofs passes every test that {ref} passes.")
            out.append("")
    out.append("| test | " + " | ".join(fstyps) + " |")
    out.append("|---|" + "---|" * len(fstyps))
    for t in tests:
        cells = []
        for fs in fstyps:
            st = res.get((fs, t))
            if st is None:
                cells.append("missing")
            elif st[0] == "notrun":
                cells.append("not run: " + notrun_reason(fs, t))
            else:
                cells.append(f"{st[0]} {st[1]} s")
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    with open(os.path.join(a.dir, "summary.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
