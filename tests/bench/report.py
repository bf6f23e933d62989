#!/usr/bin/python3
"""Turns the raw results of tests/bench/run.sh into the Markdown report.

Reads RESULTS/{fio-*.json[.gz],cpu-*.txt,qemu-*.txt,rss-*.txt,machine.txt,
failures.txt}, prints the tables, the ratios and one PASS/FAIL line per issue 9
target on stdout. Every figure of every system that was run must be there:
each missing one gets a line "missing figure: SYSTEM: JOB: REASON" on stderr.

Exit status: 0 when every figure is there (whatever the targets say); 3 when a
figure is missing; 4 with --enforce when every figure is there but a target is
missed (FAIL) or not checked (SKIP: a system it needs was not run); 2 for a
usage error.
"""
import argparse
import gzip
import json
import os
import re
import sys

JOBS = [
    ("seqwrite", "write", "seq write 1M QD4", "MB/s"),
    ("seqread", "read", "seq read 1M QD4", "MB/s"),
    ("randread", "read", "rand read 4K QD32", "IOPS"),
    ("randwrite", "write", "rand write 4K QD32", "IOPS"),
]
FIO_SYSTEMS = [
    ("raw", "raw file, no FUSE"),
    ("bindfs", "bindfs (FUSE, no crypto)"),
    ("gocryptfs", "gocryptfs"),
    ("cmkfs", "cmkfs disk"),
]
# What a run of bench version 2 (machine.txt bench=2, issue 23) adds: the
# fsync job, the cmkfs daemon with backing_io = "direct" (tag cmkfsd), many
# disks at once, fsync beside busy neighbours and the page-cache growth.
# Runs recorded before it are reported as they were.
FSYNC_JOB = ("fsync", "write", "4K write QD1 + fdatasync", "IOPS")
DIRECT_SYSTEM = ("cmkfsd", "cmkfs disk, backing_io = direct")
MANY_SYSTEMS = [
    ("raw", "raw files, no FUSE"),
    ("gocryptfs", "gocryptfs"),
    ("cmkfs", "cmkfs disks"),
    ("cmkfsd", "cmkfs disks, backing_io = direct"),
]
BUSY_SYSTEMS = [
    ("raw", "raw files, no FUSE"),
    ("cmkfs", "cmkfs disks"),
    ("cmkfsd", "cmkfs disks, backing_io = direct"),
]
# The tags whose figures a system's run produces.
SYSTEM_OF = {"cmkfsd": "cmkfs", "cmkfs16": "cmkfs"}
QEMU_SYSTEMS = [
    ("raw", "raw file, no FUSE"),
    ("luks", "QEMU's own LUKS driver on a raw file"),
    ("cmkfs", "cmkfs disk"),
]
GIB = 1 << 30
MIB = 1 << 20


def read_text(path):
    """The file's text, or of PATH.gz when only the compressed copy is there
    (run.sh --record keeps fio's JSON gzipped), or None."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        pass
    try:
        with gzip.open(path + ".gz", "rt") as f:
            return f.read()
    except (OSError, EOFError, UnicodeDecodeError):
        return None


def parse_fio(text, name, side):
    """(bytes per second, IOPS) of one fio job's JSON, or the reason there is
    no figure."""
    if text is None:
        return f"{name} not found"
    if "{" not in text:
        return f"{name} holds no JSON"
    try:
        doc = json.loads(text[text.index("{"):])
        first = doc["jobs"][0]
        stats = first[side]
        bw, iops, moved = float(stats["bw_bytes"]), float(stats["iops"]), stats.get("io_bytes", 0)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return f"{name} is not fio JSON with jobs[0].{side} ({type(e).__name__})"
    if first.get("error", 0):
        return f"fio reported error {first['error']} in {name}"
    if moved <= 0:
        return f"fio moved no bytes ({side}) in {name}"
    return bw, iops


def load_fio(results, tag, job, side):
    """(bytes per second, IOPS) of one fio job, or the reason (a str)."""
    name = f"fio-{tag}-{job}.json"
    return parse_fio(read_text(os.path.join(results, name)), name, side)


def load_fio_jobs(results, name):
    """Every job of a multi-job fio JSON as (jobname, read iops, write iops,
    read+write bytes per second), or the reason (a str)."""
    text = read_text(os.path.join(results, name))
    if text is None:
        return f"{name} not found"
    try:
        doc = json.loads(text[text.index("{"):])
        jobs = []
        for j in doc["jobs"]:
            if j.get("error", 0):
                return f"fio reported error {j['error']} in {name}"
            r, w = j["read"], j["write"]
            if r.get("io_bytes", 0) + w.get("io_bytes", 0) <= 0:
                return f"fio moved no bytes in job {j.get('jobname')} of {name}"
            jobs.append((j.get("jobname", "?"), float(r["iops"]), float(w["iops"]),
                         float(r["bw_bytes"]) + float(w["bw_bytes"])))
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return f"{name} is not fio JSON with jobs[].read/write ({type(e).__name__})"
    if not jobs:
        return f"{name} holds no job"
    return jobs


def cached_growth(results, tag):
    """(MiB written, MiB the page cache grew by) or None."""
    text = read_text(os.path.join(results, f"cached-{tag}.txt"))
    try:
        before, after, written = (float(x) for x in text.split())
    except (AttributeError, ValueError):
        return None
    return written, (after - before) / 1024


def fio_figure(results, tag, job, side, unit):
    got = load_fio(results, tag, job, side)
    if isinstance(got, str):
        return None
    bw, iops = got
    return bw / 1e6 if unit == "MB/s" else iops


def cpu_window(results, name):
    """(cpu seconds, wall seconds) sampled by run.sh, or None."""
    text = read_text(os.path.join(results, f"cpu-{name}.txt"))
    if not text:
        return None
    try:
        t0, c0, t1, c1, tck = (float(x) for x in text.split())
    except ValueError:
        return None
    if t1 <= t0:
        return None
    return (c1 - c0) / tck, t1 - t0


def cpu_per_gib_fio(results, tag, job, side):
    window = cpu_window(results, f"{tag}-{job}")
    got = load_fio(results, tag, job, side)
    if window is None or isinstance(got, str) or got[0] <= 0:
        return None
    cpu, wall = window
    return cpu / (got[0] * wall / GIB)


def qemu_mib_s(results, system, op):
    text = read_text(os.path.join(results, f"qemu-{system}-{op}.txt"))
    if not text:
        return None
    m = re.search(r"\(([\d.]+) (bytes|KiB|MiB|GiB|TiB)/sec", text)
    if not m:
        return None
    scale = {"bytes": 1 / MIB, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024,
             "TiB": 1024 * 1024}[m.group(2)]
    return float(m.group(1)) * scale


def rss_mib(results, name):
    text = read_text(os.path.join(results, f"rss-{name}.txt"))
    try:
        return int(text.split()[0]) / 1024
    except (AttributeError, ValueError, IndexError):
        return None


def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "IOPS":
        return f"{value / 1000:.1f}K" if value >= 1000 else f"{value:.0f}"
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit == "cpu":
        return f"{value:.2f}"
    return f"{value:.0f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "| --- |" + " ---: |" * (len(header) - 1)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


class Missing:
    """The figures a run lacks, each with the system, the job and why."""

    def __init__(self, results):
        self.items = []
        self.step_failures = {}
        for line in (read_text(os.path.join(results, "failures.txt")) or "").splitlines():
            system, _, _ = line.partition(":")
            self.step_failures.setdefault(system.strip(), line.strip())

    def add(self, system, job, reason):
        step = self.step_failures.get(system)
        if step:
            reason += f" (run.sh: {step})"
        self.items.append(f"missing figure: {system}: {job}: {reason}")


def file_reason(results, name, what):
    if read_text(os.path.join(results, name)) is None:
        return f"{name} not found"
    return f"{name} holds no {what}"


def many_n_of(machine):
    return int(machine.get("many_n", "8"))


def v2_sections(res, machine, was_run, fio, missing, out):
    """The tables bench version 2 adds; returns ({tag: (aggregate IOPS,
    min/max)}, {tag: (MiB written, MiB grown)}): what the targets check."""
    n = many_n_of(machine)
    many_mib = machine.get("many_mib", "?")
    many = {}
    rows = []
    for tag, label in MANY_SYSTEMS:
        got = load_fio_jobs(res, f"fio-{tag}-many.json")
        if isinstance(got, str):
            if was_run(tag):
                missing.add(tag, f"fio on {n} files at once", got)
            rows.append([label] + ["—"] * 6)
            continue
        per = [r + w for _, r, w, _ in got]
        agg, lo, hi = sum(per), min(per), max(per)
        fair = lo / hi if hi > 0 else None
        many[tag] = (agg, fair)
        cpu = None
        window = cpu_window(res, f"{tag}-many")
        moved = sum(b for _, _, _, b in got)
        if window is not None and moved > 0:
            cpu = window[0] / (moved * window[1] / GIB)
        elif tag != "raw" and was_run(tag):
            missing.add(tag, f"daemon CPU per GiB on {n} files at once",
                        file_reason(res, f"cpu-{tag}-many.txt", "CPU sample"))
        rows.append([label, fmt(agg, "IOPS"), fmt(lo, "IOPS"), fmt(hi, "IOPS"), fmt(fair, "ratio"),
                     fmt(ratio(agg, many.get("raw", (None,))[0]), "ratio"),
                     "—" if tag == "raw" else fmt(cpu, "cpu")])
    out.append(f"{n} disks (files) of {many_mib} MiB at once, one fio job each "
               "(4K random read/write 70/30, QD8):")
    out.append("")
    out.append(table(["many disks", "aggregate IOPS", "slowest disk IOPS", "fastest disk IOPS",
                      "fairness min/max", "aggregate/raw", "daemon CPU s/GiB"], rows))
    out.append("")

    rows = []
    for tag, label in BUSY_SYSTEMS:
        got = load_fio_jobs(res, f"fio-{tag}-fsyncbusy.json")
        alone = fio.get((tag, "fsync"))
        if isinstance(got, str):
            if was_run(tag):
                missing.add(tag, "fio fsync beside streaming neighbours", got)
            rows.append([label, fmt(alone, "IOPS"), "—", "—", "—"])
            continue
        fsync_iops = got[0][2]
        streams = sum(b for _, _, _, b in got[1:]) / 1e6
        rows.append([label, fmt(alone, "IOPS"), fmt(fsync_iops, "IOPS"),
                     fmt(ratio(fsync_iops, alone), "ratio"), f"{streams:.0f}"])
    out.append("4K write QD1 + fdatasync on one disk, alone and while 1M QD4 writes stream "
               "to three others:")
    out.append("")
    out.append(table(["fsync beside neighbours", "alone IOPS", "beside streams IOPS",
                      "beside/alone", "streams MB/s"], rows))
    out.append("")

    cache = {}
    rows = []
    for tag, label in BUSY_SYSTEMS:
        got = cached_growth(res, tag)
        if got is None:
            if was_run(tag):
                missing.add(tag, "page-cache growth",
                            file_reason(res, f"cached-{tag}.txt", "Cached figures"))
            rows.append([label, "—", "—", "—"])
            continue
        cache[tag] = got
        written, grown = got
        rows.append([label, f"{written:.0f}", f"{grown:.0f}", f"{100 * grown / written:.1f}%"])
    out.append("The host's page cache (Cached in /proc/meminfo) across one O_DIRECT "
               "1M QD4 write, after dropping the caches:")
    out.append("")
    out.append(table(["page cache", "MiB written", "Cached growth MiB", "growth/written"], rows))
    out.append("")
    return many, cache


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="directory run.sh wrote (or a recorded docs/bench/RUN)")
    parser.add_argument("--enforce", action="store_true",
                        help="exit 4 when a target is missed or not checked (release checks, idle machine)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    res = args.results
    if not os.path.isdir(res):
        print(f"report.py: --results {res} is not a directory; expected the results directory of run.sh", file=sys.stderr)
        return 2

    machine = {}
    notes = []
    for line in (read_text(os.path.join(res, "machine.txt")) or "").splitlines():
        key, _, value = line.partition("=")
        if key == "note":
            notes.append(value)
        else:
            machine[key] = value
    ran = set(machine.get("systems", "raw,bindfs,gocryptfs,cmkfs,luks").split(","))
    v2 = machine.get("bench", "1") == "2"
    jobs = JOBS + [FSYNC_JOB] if v2 else JOBS
    fio_systems = FIO_SYSTEMS + [DIRECT_SYSTEM] if v2 else FIO_SYSTEMS

    def was_run(tag):
        return SYSTEM_OF.get(tag, tag) in ran
    file_mib = int(machine.get("file_mib", "1024"))
    qemu_mib = int(machine.get("qemu_mib", "1000"))
    cache_mib = float(machine.get("cache_mib", "32"))
    missing = Missing(res)
    out = []

    out.append(f"### Run {machine.get('date', '?')} ({machine.get('mode', '?')})")
    out.append("")
    if machine.get("recorded"):
        link = machine["recorded"] + "/"
        out.append(f"- recorded by `tests/bench/run.sh {machine.get('args', '')}`; raw results "
                   f"(fio JSON, qemu-io output, CPU and RSS samples): [{link}]({link})")
    for note in notes:
        out.append(f"- note: {note}")
    out.append(f"- machine: {machine.get('nproc', '?')} CPUs, {machine.get('cpu', '?')} "
               f"({machine.get('aes', '?')}), {machine.get('mem', '?')} RAM, "
               f"kernel {machine.get('kernel', '?')}, backing fs {machine.get('fs', '?')}")
    out.append(f"- load average (1, 5, 15 min): {machine.get('load', '?')}")
    out.append(f"- tools: {machine.get('fio', '?')}; {machine.get('qemu', '?')}; "
               f"{machine.get('gocryptfs', '?')}; {machine.get('bindfs', '?')}; "
               f"{machine.get('cmkfs', '?') or 'cmkfs ?'}")
    out.append(f"- fio: one {file_mib} MiB file, direct=1, libaio, "
               f"{machine.get('runtime', '?')} s per job after a {machine.get('ramp', '?')} s ramp; "
               f"qemu-io: {qemu_mib} MiB in one request, -t none; "
               f"cmkfs [engine] cache = {cache_mib:.0f}M"
               + (f", fuse_threads = {machine.get('fuse_threads', '?')}" if v2 else ""))
    out.append("")

    # fio figures and ratios.
    fio = {}
    for tag, _ in fio_systems:
        for job, side, _, unit in jobs:
            fio[(tag, job)] = fio_figure(res, tag, job, side, unit)
            if was_run(tag) and fio[(tag, job)] is None:
                missing.add(tag, f"fio {job}", load_fio(res, tag, job, side))
    header = ["fio"] + [f"{label} {unit}" for _, _, label, unit in jobs]
    rows = []
    for tag, label in fio_systems:
        rows.append([label] + [fmt(fio[(tag, j)], u) for j, _, _, u in jobs])
    for peer in ("gocryptfs", "bindfs", "raw"):
        rows.append([f"cmkfs/{peer}"] + [fmt(ratio(fio[("cmkfs", j)], fio[(peer, j)]), "ratio")
                                         for j, _, _, _ in jobs])
    if v2:
        rows.append(["cmkfs direct/raw"] + [fmt(ratio(fio[("cmkfsd", j)], fio[("raw", j)]), "ratio")
                                            for j, _, _, _ in jobs])
    out.append(table(header, rows))
    out.append("")

    # qemu-io.
    qemu = {}
    for system, _ in QEMU_SYSTEMS:
        for op in ("write", "read"):
            qemu[(system, op)] = qemu_mib_s(res, system, op)
            if system in ran and qemu[(system, op)] is None:
                missing.add(system, f"qemu-io {op}",
                            file_reason(res, f"qemu-{system}-{op}.txt", "qemu-io rate"))
    rows = [[label, fmt(qemu[(s, "write")], "MiB/s"), fmt(qemu[(s, "read")], "MiB/s")]
            for s, label in QEMU_SYSTEMS]
    for peer, label in (("luks", "QEMU LUKS"), ("raw", "raw")):
        rows.append([f"cmkfs/{label}"] + [fmt(ratio(qemu[("cmkfs", op)], qemu[(peer, op)]), "ratio")
                                          for op in ("write", "read")])
    out.append(table([f"qemu-io {qemu_mib} MiB", "seq write MiB/s", "seq read MiB/s"], rows))
    out.append("")

    # CPU seconds per GiB moved, in the FUSE daemon.
    rows = []
    cpu_systems = [("cmkfs", "cmkfs"), ("gocryptfs", "gocryptfs"), ("bindfs", "bindfs")]
    if v2:
        cpu_systems.insert(1, ("cmkfsd", "cmkfs, direct"))
    for tag, label in cpu_systems:
        if not was_run(tag):
            continue
        cells = []
        for job, side, _, _ in jobs:
            value = cpu_per_gib_fio(res, tag, job, side)
            if value is None and tag in ("cmkfs", "cmkfsd", "gocryptfs"):
                missing.add(tag, f"daemon CPU per GiB during fio {job}",
                            file_reason(res, f"cpu-{tag}-{job}.txt", "CPU sample")
                            if cpu_window(res, f"{tag}-{job}") is None else "no fio figure")
            cells.append(fmt(value, "cpu"))
        for op in ("write", "read"):
            value = None
            if tag == "cmkfsd":
                pass  # qemu-io runs on the buffered daemon only
            elif tag == "cmkfs":
                window = cpu_window(res, f"cmkfs-qemu-{op}")
                if window is not None:
                    value = window[0] / (qemu_mib / 1024)
                else:
                    missing.add(tag, f"daemon CPU per GiB during qemu-io {op}",
                                file_reason(res, f"cpu-cmkfs-qemu-{op}.txt", "CPU sample"))
            cells.append(fmt(value, "cpu"))
        rows.append([label] + cells)
    out.append(table(["daemon CPU s/GiB"] + [label for _, _, label, _ in jobs]
                     + ["qemu-io write", "qemu-io read"], rows))
    out.append("")

    # Daemon memory.
    rss_fio = rss_mib(res, "cmkfs-fio")
    rss_all = rss_mib(res, "cmkfs-all")
    rss_big = rss_mib(res, "cmkfs16-fio")
    rss_go = rss_mib(res, "gocryptfs")
    if "cmkfs" in ran:
        for name, file, value in (("peak RSS after fio", "cmkfs-fio", rss_fio),
                                  ("peak RSS after the run", "cmkfs-all", rss_all),
                                  ("peak RSS with the 16x disk", "cmkfs16-fio", rss_big)):
            if value is None:
                missing.add("cmkfs", name, file_reason(res, f"rss-{file}.txt", "VmHWM figure"))
        for job, side, _, unit in jobs:
            if fio_figure(res, "cmkfs16", job, side, unit) is None:
                missing.add("cmkfs", f"fio {job} on the 16x disk", load_fio(res, "cmkfs16", job, side))

    def mib(v):
        return "—" if v is None else f"{v:.1f}"
    rows = [
        [f"cmkfs, {file_mib} MiB disk, after the fio jobs", mib(rss_fio)],
        [f"cmkfs, {file_mib} MiB disk, after fio and qemu-io", mib(rss_all)],
        [f"cmkfs, {16 * file_mib} MiB disk (16x), same fio jobs on its first {file_mib} MiB",
         mib(rss_big)],
        ["gocryptfs, after the fio jobs (reference)", mib(rss_go)],
    ]
    out.append(table(["daemon peak RSS (VmHWM)", "MiB"], rows))
    big_row = [fmt(fio_figure(res, "cmkfs16", j, s, u), u) for j, s, _, u in jobs]
    out.append("")
    out.append(table(["fio on the 16x cmkfs disk"] + [f"{label} {unit}" for _, _, label, unit in jobs],
                     [["cmkfs, 16x disk"] + big_row]))
    out.append("")
    many = cache = {}
    if v2:
        many, cache = v2_sections(res, machine, was_run, fio, missing, out)

    # Targets (issue 9; docs/BENCHMARKS.md).
    checks = []

    def check(name, value, limit, cmp=">=", needs=("cmkfs",)):
        if not set(needs) <= ran:
            checks.append(f"- SKIP {name}: not run ({', '.join(sorted(set(needs) - ran))})")
            return
        if value is None:
            checks.append(f"- FAIL {name}: no figure")
            return
        ok = value >= limit if cmp == ">=" else value <= limit
        shown = f"{value:.2f}x" if cmp == ">=" else f"{value:.1f} MiB"
        bound = f"{limit:.2f}x" if cmp == ">=" else f"{limit:.1f} MiB"
        checks.append(f"- {'PASS' if ok else 'FAIL'} {name}: {shown} (target {cmp} {bound})")

    for job, _, label, _ in JOBS:
        check(f"fio {label} cmkfs/gocryptfs", ratio(fio[("cmkfs", job)], fio[("gocryptfs", job)]), 1.5,
              needs=("cmkfs", "gocryptfs"))
    for job, _, label, _ in JOBS:
        check(f"fio {label} cmkfs/bindfs", ratio(fio[("cmkfs", job)], fio[("bindfs", job)]), 0.9,
              needs=("cmkfs", "bindfs"))
    for op in ("write", "read"):
        check(f"qemu-io seq {op} cmkfs/QEMU LUKS", ratio(qemu[("cmkfs", op)], qemu[("luks", op)]), 2.0,
              needs=("cmkfs", "luks"))
    check("daemon peak RSS after the whole run", rss_all, 64 + cache_mib, "<=")
    flat_limit = None if rss_fio is None else rss_fio + max(4.0, 0.1 * rss_fio)
    flat = "daemon peak RSS flat with a 16x disk (1x peak + max(4 MiB, 10%))"
    if flat_limit is None:
        check(flat, None, 0, "<=")  # no 1x figure: no bound, FAIL "no figure"
    else:
        check(flat, rss_big, flat_limit, "<=")
    if v2:
        for tag, label in (("cmkfs", "cmkfs"), ("cmkfsd", "cmkfs direct")):
            check(f"fio 4K write QD1 + fdatasync {label}/raw",
                  ratio(fio[(tag, "fsync")], fio[("raw", "fsync")]), 0.9, needs=("cmkfs", "raw"))
        for tag, label in (("cmkfs", "cmkfs"), ("cmkfsd", "cmkfs direct")):
            agg = many.get(tag, (None, None))[0]
            check(f"{many_n_of(machine)} disks aggregate IOPS {label}/raw",
                  ratio(agg, many.get("raw", (None, None))[0]), 0.8, needs=("cmkfs", "raw"))
            check(f"{many_n_of(machine)} disks fairness (min/max) {label}",
                  many.get(tag, (None, None))[1], 0.8)
        grown = cache.get("cmkfsd")
        check("page cache growth of a direct write (at most 10% of the bytes written)",
              None if grown is None else grown[1], 0.1 * (grown[0] if grown else 0), "<=")
    passed = sum(1 for c in checks if c.startswith("- PASS"))
    scope = "issues 9 and 23" if v2 else "issue 9"
    out.append(f"Targets ({scope}, from this run): {passed} of {len(checks)} PASS")
    out.append("")
    out.extend(checks)

    print("\n".join(out))
    for line in missing.items:
        print(line, file=sys.stderr)
    if missing.items:
        return 3
    if args.enforce and passed < len(checks):
        print(f"report.py --enforce: {len(checks) - passed} of {len(checks)} targets not met "
              "(FAIL or SKIP lines above)", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
