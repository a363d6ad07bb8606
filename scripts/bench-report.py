#!/usr/bin/env python3
"""The report of `make bench` (scripts/bench.sh): reads the ferrobench JSON
files of one run (<dir>/ferrofs.json, ext4.json, xfs.json) and writes
<dir>/results.md (medians, ferrofs/ext4-dax and ferrofs/xfs-dax ratios, and
the spread of every series) and <dir>/bench-fsync.png (case 1: fsync time
against dirty pages, log-log, with the user-space flush floor).

    bench-report.py --dir DIR --accel tcg|kvm [--seconds N] [--command CMD]

Percentiles interpolate linearly between ranks, as ferrobench's stats.rs.
"""
import argparse
import datetime
import json
import os
import sys

FS = ["ferrofs", "ext4", "xfs"]
LABEL = {"ferrofs": "ferrofs", "ext4": "ext4-dax", "xfs": "xfs-dax"}
MOUNT = {
    "ferrofs": "mkfs-ferrofs -f; mount -t ferrofs -o dax",
    "ext4": "mkfs.ext4 -F -q; mount -o dax",
    "xfs": "mkfs.xfs -f -q -m reflink=0; mount -o dax",
}
# A ratio within this factor of 1 is called even.
EVEN = 0.10


def quantile(s, q):
    pos = q * (len(s) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(samples):
    s = sorted(x for x in samples if x is not None)
    if not s:
        return None
    return {"n": len(s), "min": s[0], "p10": quantile(s, 0.1), "median": quantile(s, 0.5),
            "p90": quantile(s, 0.9), "max": s[-1]}


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "us":
        if v < 10:
            return f"{v:.2f}"
        if v < 1000:
            return f"{v:.1f}"
        return f"{v:,.0f}"
    if unit == "x":
        return f"{v:.2f}"
    return f"{v:,.0f}"


def unit_label(unit, better):
    u = "µs" if unit == "us" else unit
    return u + (" ↓" if better == "lower" else " ↑")


def verdict(r, better):
    """How ferrofs fares, from ratio r = ferrofs / other."""
    if r is None:
        return None
    gain = (1 / r) if better == "lower" else r
    if gain > 1 + EVEN:
        return "faster"
    if gain < 1 / (1 + EVEN):
        return "slower"
    return "even"


def load(d):
    runs = {}
    for fs in FS:
        p = os.path.join(d, fs + ".json")
        if os.path.exists(p):
            with open(p) as f:
                runs[fs] = json.load(f)
    return runs


def series_index(run):
    return {s["id"]: s for s in run["series"]}


def rows(runs):
    """Table rows in ferrobench order: (id, case, title, unit, better,
    {fs: median}), with case 2's largest/4 KiB ratio after case 2."""
    order, meta = [], {}
    for fs in FS:
        for s in runs.get(fs, {}).get("series", []):
            if s["id"] not in meta:
                order.append(s["id"])
                meta[s["id"]] = s
    idx = {fs: series_index(r) for fs, r in runs.items()}
    out = []
    for i, sid in enumerate(order):
        m = meta[sid]
        if not m["table"]:
            continue
        med = {}
        for fs in runs:
            s = idx[fs].get(sid)
            sm = summary(s["samples"]) if s else None
            med[fs] = sm["median"] if sm else None
        out.append((sid, m["case"], m["title"], m["unit"], m["better"], med))
        nxt = order[i + 1] if i + 1 < len(order) else None
        if m["group"] == "fsync_filesize" and (nxt is None or meta[nxt]["group"] != "fsync_filesize"):
            ratio = {}
            for fs in runs:
                sizes = sorted((s for s in runs[fs]["series"] if s["group"] == "fsync_filesize"),
                               key=lambda s: s["x"])
                if len(sizes) > 1:
                    a, b = summary(sizes[0]["samples"]), summary(sizes[-1]["samples"])
                    ratio[fs] = b["median"] / a["median"] if a and b and a["median"] > 0 else None
                else:
                    ratio[fs] = None
            out.append(("c2.ratio", 2, "fsync time, largest file ÷ 4 KiB file (1 = cost follows "
                        "the dirty data, not the file size)", "x", None, ratio))
    return out


# Case 13's getppid reference: two threads of system calls on two idle
# cores scale by about 2 (1.88-2.05 in quiet runs). Outside this band a
# turn was slowed by the host, and the run's scaling ratios say more about
# the machine than about the file systems.
QUIET = (1.8, 2.1)


def noise_note(runs, have):
    refs = {}
    for fs in have:
        s = series_index(runs[fs]).get("c13.ref.syscall.scale2")
        sm = summary(s["samples"]) if s else None
        if sm:
            refs[fs] = sm["median"]
    off = {fs: v for fs, v in refs.items() if not QUIET[0] <= v <= QUIET[1]}
    if not off:
        return None
    got = ", ".join(f"{LABEL[fs]} {v:.2f}" for fs, v in refs.items())
    return (f"**A noisy run for case 13**: its getppid reference (no file system) scaled by {got} "
            f"(quiet runs: {QUIET[0]}-{QUIET[1]}); compare this run's 2-thread/1-thread ratios "
            "between file systems with care, or run case 13 again on an idle machine.")


def markdown(runs, accel, seconds, command):
    first = runs[next(iter(runs))]
    quick = first.get("quick")
    when = datetime.datetime.fromtimestamp(first.get("started_unix", 0)).strftime("%Y-%m-%d %H:%M")
    L = []
    names = [LABEL[fs] for fs in FS if fs in runs]
    if "ferrofs" in runs and len(names) > 1:
        what = "ferrofs against " + " and ".join(names[1:])
    else:
        what = ", ".join(names)
    L.append(f"# ferrobench: {what} ({when})")
    L.append("")
    if accel == "tcg":
        L.append("**Accelerator: TCG** (QEMU software emulation, no KVM). Absolute times mean "
                 "little: every instruction is translated, and page faults, system calls and "
                 "cache-line flushes cost what the emulator makes them cost. The results are the "
                 "ratios between file systems measured in this same run.")
    elif accel == "kvm":
        L.append("**Accelerator: KVM.** Times are those of a virtual machine whose pmem is "
                 "ordinary RAM; compare the file systems with each other, not with real pmem.")
    else:
        L.append(f"**Accelerator: {accel}.** Compare the file systems with each other only.")
    L.append("")
    plan = first.get("plan", {})
    L.append(f"- Made by `{command}`" + (f" in {seconds // 60} min {seconds % 60} s" if seconds else "")
             + f"; {'quick' if quick else 'full'} mode: {plan.get('latency_samples')} samples per "
             f"latency series (after {plan.get('warmup')} untimed), {plan.get('big_fault_sweeps')} per "
             f"256 MiB fault series, {plan.get('fault_sweeps')} per 32 MiB fault series and "
             f"whole-mapping msync, {plan.get('batches')} batches of {plan.get('batch')} "
             f"operations per rate series.")
    L.append(f"- Guest kernel {first.get('kernel')}, CPUID hypervisor vendor "
             f"`{first.get('hypervisor')}`, user-space flush instruction `{first.get('flush_insn')}`.")
    L.append("- One guest, one device (`/dev/pmem0`, 1 GiB), formatted and mounted in turn: "
             + "; ".join(f"{LABEL[fs]}: `{MOUNT[fs]}`" for fs in FS if fs in runs) + ".")
    for fs, r in runs.items():
        if r.get("error"):
            L.append(f"- **{LABEL[fs]}: ferrobench stopped early: {r['error']}**")
    L.append("")
    have = [fs for fs in FS if fs in runs]
    others = [fs for fs in ("ext4", "xfs") if fs in runs and "ferrofs" in runs]
    head = ["#", "measurement (median)", "unit"] + [LABEL[fs] for fs in have]
    head += [f"ferrofs / {LABEL[o]}" for o in others]
    if others:
        head.append("ferrofs is")
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "|".join(["---", "---", "---"] + ["---:"] * (len(head) - 3)) + "|")
    for sid, case, title, unit, better, med in rows(runs):
        cells = [str(case), title, "" if unit == "x" else unit_label(unit, better)]
        cells += [fmt(med.get(fs), unit) for fs in have]
        verdicts = []
        for o in others:
            a, b = med.get("ferrofs"), med.get(o)
            r = a / b if a is not None and b else None
            cells.append("—" if unit == "x" or r is None else f"{r:.2f}")
            if unit != "x" and not sid.startswith("c8."):
                verdicts.append(verdict(r, better))
        if others:
            v = [x for x in verdicts if x]
            cells.append("—" if not v else v[0] if len(set(v)) == 1 else "/".join(v))
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    noisy = noise_note(runs, have)
    if noisy:
        L.append(noisy)
        L.append("")
    L.append("↓: lower is better; ↑: higher is better. Ratio = ferrofs ÷ the other file system, so "
             "below 1 is ferrofs faster for ↓ rows and slower for ↑ rows. \"ferrofs is\" reads the "
             f"ratios against ext4-dax/xfs-dax: faster or slower by more than {EVEN:.0%}, else even. "
             "Case 8 (the floor) makes no file-system call; its columns only show it measured on "
             "each file system's mapping.")
    L.append("")
    L.append("![fsync latency against dirty pages](bench-fsync.png)")
    L.append("")
    L.append("## Spread")
    L.append("")
    L.append("p10 / median / p90 of every series (all samples are in the JSON files).")
    L.append("")
    L.append("| id | unit | " + " | ".join(LABEL[fs] for fs in have) + " |")
    L.append("|---|---|" + "|".join(["---:"] * len(have)) + "|")
    idx = {fs: series_index(runs[fs]) for fs in have}
    ids = []
    for fs in have:
        for s in runs[fs]["series"]:
            if s["id"] not in ids:
                ids.append(s["id"])
    for sid in ids:
        unit = next(idx[fs][sid]["unit"] for fs in have if sid in idx[fs])
        cells = []
        for fs in have:
            s = idx[fs].get(sid)
            sm = summary(s["samples"]) if s else None
            cells.append("—" if not sm else
                         f"{fmt(sm['p10'], unit)} / {fmt(sm['median'], unit)} / {fmt(sm['p90'], unit)}")
        L.append(f"| {sid} | {'µs' if unit == 'us' else unit} | " + " | ".join(cells) + " |")
    L.append("")
    return "\n".join(L)


def plot(runs, accel, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench-report: no matplotlib (apt install python3-matplotlib); no plot", file=sys.stderr)
        return False
    if not any(s["group"] in ("fsync_spread", "fsync_runs") and s["samples"]
               for r in runs.values() for s in r["series"]):
        return False  # case 1 did not run
    style = {"ferrofs": ("tab:red", "o", "-"), "ext4": ("tab:blue", "s", "-"),
             "xfs": ("tab:green", "^", "-")}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, (lay, lay_title) in zip(axes, [("spread", "N pages spread over a 256 MiB file"),
                                          ("runs", "N pages as runs in 2 MiB-aligned regions")]):
        curves = [(LABEL[fs], runs[fs], f"fsync_{lay}", style[fs]) for fs in FS if fs in runs]
        floor_src = next((runs[fs] for fs in FS if fs in runs), None)
        if floor_src:
            curves.append((f"floor: {floor_src.get('flush_insn')} + sfence from user space, no syscall",
                           floor_src, f"floor_{lay}", ("black", "x", "--")))
        for label, run, group, (color, marker, ls) in curves:
            pts = sorted((s["x"], summary(s["samples"])) for s in run["series"]
                         if s["group"] == group and s["samples"])
            if not pts:
                continue
            xs = [x for x, _ in pts]
            med = [m["median"] for _, m in pts]
            lo = [m["median"] - m["p10"] for _, m in pts]
            hi = [m["p90"] - m["median"] for _, m in pts]
            ax.errorbar(xs, med, yerr=[lo, hi], label=label, color=color, marker=marker,
                        linestyle=ls, capsize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("dirty 4 KiB pages (N)")
        ax.set_title(lay_title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fsync time, µs (median, bars p10–p90)")
    axes[0].legend(fontsize=8, loc="upper left")
    what = {"tcg": "QEMU TCG (software emulation): compare the curves, not absolute values",
            "kvm": "KVM guest, pmem emulated in RAM"}.get(accel, accel)
    fig.suptitle(f"fsync after storing to N pages through a MAP_SHARED mapping — {what}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--accel", default="unknown")
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--command", default="make bench")
    a = ap.parse_args()
    runs = load(a.dir)
    if not runs:
        sys.exit(f"bench-report: no ferrofs/ext4/xfs JSON files in {a.dir}")
    md = markdown(runs, a.accel, a.seconds, a.command)
    if not plot(runs, a.accel, os.path.join(a.dir, "bench-fsync.png")):
        md = md.replace("![fsync latency against dirty pages](bench-fsync.png)\n", "")
    with open(os.path.join(a.dir, "results.md"), "w") as f:
        f.write(md)


if __name__ == "__main__":
    main()
