#!/usr/bin/python3
"""Tests of tests/bench/report.py (ctest bench.report) and of what
docs/BENCHMARKS.md's results log holds.

report.py runs as run.sh runs it, on a results directory written here: one
complete set of figures meeting every target, then the same set with one thing
changed (a figure missing, a target missed, ...). The last tests check that
every recorded entry of docs/BENCHMARKS.md is exactly what report.py prints for
the raw results kept in docs/bench/.
"""
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(BENCH))
REPORT = os.path.join(BENCH, "report.py")
RUN_SH = os.path.join(BENCH, "run.sh")
DOC = os.path.join(REPO, "docs", "BENCHMARKS.md")

# MB/s for the 1M jobs, IOPS for the 4K ones: cmkfs meets every target.
FIO = {
    "raw": {"seqwrite": 1500, "seqread": 1200, "randread": 40000, "randwrite": 30000},
    "bindfs": {"seqwrite": 800, "seqread": 700, "randread": 20000, "randwrite": 10000},
    "gocryptfs": {"seqwrite": 300, "seqread": 400, "randread": 5000, "randwrite": 3000},
    "cmkfs": {"seqwrite": 1000, "seqread": 900, "randread": 40000, "randwrite": 30000},
    "cmkfs16": {"seqwrite": 1000, "seqread": 900, "randread": 40000, "randwrite": 30000},
}
SIDE = {"seqwrite": "write", "seqread": "read", "randread": "read", "randwrite": "write"}
QEMU = {"raw": (2000, 900), "luks": (300, 300), "cmkfs": (1000, 800)}  # MiB/s write, read
RSS = {"cmkfs-fio": 34.0, "cmkfs-all": 36.0, "cmkfs16-fio": 36.5, "gocryptfs": 30.0}  # MiB


def fio_json(job, value, error=0):
    side = SIDE[job]
    bw = value * 1e6 if job.startswith("seq") else value * 4096
    iops = bw / (1 << 20) if job.startswith("seq") else value
    stats = {"io_bytes": int(bw * 2), "bw_bytes": int(bw), "iops": iops}
    idle = {"io_bytes": 0, "bw_bytes": 0, "iops": 0.0}
    return json.dumps({"fio version": "fio-3.33", "jobs": [{
        "jobname": job, "error": error,
        "read": stats if side == "read" else idle,
        "write": stats if side == "write" else idle}]})


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def make_results(d, systems="raw,bindfs,gocryptfs,cmkfs,luks"):
    ran = systems.split(",")
    write(os.path.join(d, "machine.txt"), "\n".join([
        "date=2026-12-03T10:00:00Z", "nproc=2", "cpu=Test CPU", "aes=AES-NI", "mem=1.0 GiB",
        "kernel=6.1", "load=0.10 0.10 0.10 at the start, 0.20 0.10 0.10 at the end",
        "fs=ext2/ext3 on /dev/vda", "fio=fio-3.33", "qemu=qemu-io version 7.2",
        "gocryptfs=gocryptfs 2.3", "bindfs=bindfs 1.14.7", "cmkfs=cmkfs 0.1.0", "mode=quick",
        "file_mib=256", "runtime=2", "ramp=1", "qemu_mib=250", "cache_mib=32",
        f"systems={systems}", "args=--quick"]) + "\n")
    for tag, jobs in FIO.items():
        if tag.rstrip("16") not in ran:
            continue
        for job, value in jobs.items():
            write(os.path.join(d, f"fio-{tag}-{job}.json"), fio_json(job, value))
            if tag in ("cmkfs", "gocryptfs", "bindfs"):
                write(os.path.join(d, f"cpu-{tag}-{job}.txt"), "100.0 10 101.5 60 100\n")
    for system, (wr, rd) in QEMU.items():
        if system not in ran:
            continue
        for op, rate in (("write", wr), ("read", rd)):
            write(os.path.join(d, f"qemu-{system}-{op}.txt"),
                  f"{op} 250 MiB, 1 ops; 00.25 sec ({rate / 1024:.3f} GiB/sec and 4.0 ops/sec)\n")
            if system == "cmkfs":
                write(os.path.join(d, f"cpu-cmkfs-qemu-{op}.txt"), "200.0 100 200.5 130 100\n")
    for name, mib in RSS.items():
        if name.startswith("gocryptfs") and "gocryptfs" not in ran:
            continue
        if name.startswith("cmkfs") and "cmkfs" not in ran:
            continue
        write(os.path.join(d, f"rss-{name}.txt"), f"{int(mib * 1024)}\n")


# Bench version 2 (issue 23): the fsync job, the direct-I/O daemon, many
# disks, fsync beside streaming neighbours, the page-cache growth.
FSYNC = {"raw": 5000, "bindfs": 3000, "gocryptfs": 2000, "cmkfs": 4800, "cmkfs16": 4800,
         "cmkfsd": 4900}
MANY = {"raw": [(7000, 3000)] * 8, "gocryptfs": [(1000, 400)] * 8,
        "cmkfs": [(6000, 2600)] * 7 + [(5600, 2400)], "cmkfsd": [(6500, 2800)] * 8}
BUSY = {"raw": 3000, "cmkfs": 900, "cmkfsd": 2800}  # fsync IOPS beside streams
CACHED = {"raw": (100000, 101000), "cmkfs": (100000, 600000), "cmkfsd": (100000, 110000)}


def multi_fio_json(jobs):
    """jobs: [(name, read iops, write iops)], 4 KiB each."""
    def side(iops):
        return {"io_bytes": int(iops * 4096 * 2), "bw_bytes": int(iops * 4096), "iops": iops}
    return json.dumps({"fio version": "fio-3.33", "jobs": [
        {"jobname": n, "error": 0, "read": side(r), "write": side(w)} for n, r, w in jobs]})


def make_v2_results(d):
    make_results(d)
    with open(os.path.join(d, "machine.txt"), "a") as f:
        f.write("bench=2\nfuse_threads=0\nmany_n=8\nmany_mib=32\ncache_write_mib=512\n")
    for job, value in FIO["cmkfs"].items():
        write(os.path.join(d, f"fio-cmkfsd-{job}.json"), fio_json(job, value))
        write(os.path.join(d, f"cpu-cmkfsd-{job}.txt"), "100.0 10 101.5 60 100\n")
    for tag, value in FSYNC.items():
        write(os.path.join(d, f"fio-{tag}-fsync.json"), fio_json("randwrite", value))
        if tag in ("cmkfs", "cmkfsd", "gocryptfs", "bindfs"):
            write(os.path.join(d, f"cpu-{tag}-fsync.txt"), "100.0 10 101.5 60 100\n")
    for tag, per in MANY.items():
        write(os.path.join(d, f"fio-{tag}-many.json"),
              multi_fio_json([(f"disk{i}", r, w) for i, (r, w) in enumerate(per)]))
        if tag != "raw":
            write(os.path.join(d, f"cpu-{tag}-many.txt"), "100.0 10 101.5 60 100\n")
    for tag, iops in BUSY.items():
        write(os.path.join(d, f"fio-{tag}-fsyncbusy.json"), multi_fio_json(
            [("fsync", 0, iops)] + [(f"stream{i}", 0, 100) for i in range(3)]))
    for tag, (before, after) in CACHED.items():
        write(os.path.join(d, f"cached-{tag}.txt"), f"{before} {after} 512\n")


def report(d, *args):
    p = subprocess.run([sys.executable, "-B", REPORT, "--results", d, *args],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def target_lines(stdout):
    return [l for l in stdout.splitlines() if re.match(r"- (PASS|FAIL|SKIP) ", l)]


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bench-report-test.")
        make_results(self.dir)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_complete_run_meets_every_target(self):
        rc, out, err = report(self.dir, "--enforce")
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        lines = target_lines(out)
        self.assertEqual(len(lines), 12, out)
        self.assertTrue(all(l.startswith("- PASS ") for l in lines), lines)
        self.assertIn("Targets (issue 9, from this run): 12 of 12 PASS", out)
        self.assertIn("| cmkfs disk | 1000 | 900 | 40.0K | 30.0K |", out)

    def test_missing_fio_json_fails_naming_system_and_job(self):
        os.remove(self.path("fio-gocryptfs-randread.json"))
        rc, out, err = report(self.dir)
        self.assertEqual(rc, 3)
        lines = err.splitlines()
        self.assertEqual(lines[0], "missing figure: gocryptfs: fio randread: "
                                   "fio-gocryptfs-randread.json not found")
        self.assertTrue(all(l.startswith("missing figure: gocryptfs: ") and "randread" in l
                            for l in lines), lines)
        self.assertIn("- FAIL fio rand read 4K QD32 cmkfs/gocryptfs: no figure", out)

    def test_missing_figure_names_the_failed_step(self):
        for name in os.listdir(self.dir):
            if "gocryptfs" in name:
                os.remove(self.path(name))
        write(self.path("failures.txt"), "gocryptfs: did not mount (fuse: device not found)\n")
        rc, _, err = report(self.dir)
        self.assertEqual(rc, 3)
        lines = err.splitlines()
        self.assertIn("missing figure: gocryptfs: fio seqwrite: fio-gocryptfs-seqwrite.json not "
                      "found (run.sh: gocryptfs: did not mount (fuse: device not found))", lines)
        self.assertTrue(all("(run.sh: gocryptfs: did not mount" in l for l in lines), lines)

    def test_fio_output_without_a_figure_is_missing(self):
        cases = {
            "fio-cmkfs-seqread.json": ("fio: pid=0, err=5/file:io_u.c\n",
                                       "fio-cmkfs-seqread.json holds no JSON"),
            "fio-bindfs-seqwrite.json": (fio_json("seqwrite", 800, error=5),
                                         "fio reported error 5 in fio-bindfs-seqwrite.json"),
            "fio-raw-randwrite.json": (fio_json("randwrite", 0),
                                       "fio moved no bytes (write) in fio-raw-randwrite.json"),
            "fio-cmkfs16-randread.json": ('{"jobs": []}',
                                          "fio-cmkfs16-randread.json is not fio JSON"),
        }
        for name, (text, _) in cases.items():
            write(self.path(name), text)
        rc, _, err = report(self.dir, "--enforce")
        self.assertEqual(rc, 3)
        for name, (_, reason) in cases.items():
            self.assertIn(reason, err, name)
        self.assertIn("missing figure: cmkfs: fio randread on the 16x disk: ", err)
        self.assertIn("missing figure: raw: fio randwrite: ", err)

    def test_missing_qemu_and_rss_figures(self):
        os.remove(self.path("qemu-luks-read.txt"))
        write(self.path("qemu-cmkfs-write.txt"), "qemu-io: can't open device\n")
        os.remove(self.path("rss-cmkfs16-fio.txt"))
        rc, _, err = report(self.dir)
        self.assertEqual(rc, 3)
        self.assertIn("missing figure: luks: qemu-io read: qemu-luks-read.txt not found", err)
        self.assertIn("missing figure: cmkfs: qemu-io write: qemu-cmkfs-write.txt holds no "
                      "qemu-io rate", err)
        self.assertIn("missing figure: cmkfs: peak RSS with the 16x disk: rss-cmkfs16-fio.txt "
                      "not found", err)

    def test_missed_target_is_printed_and_fails_only_with_enforce(self):
        write(self.path("fio-cmkfs-seqwrite.json"), fio_json("seqwrite", 400))  # 1.33x gocryptfs
        write(self.path("rss-cmkfs16-fio.txt"), f"{45 * 1024}\n")  # 1x peak 34 MiB + 4 < 45
        rc, out, err = report(self.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("- FAIL fio seq write 1M QD4 cmkfs/gocryptfs: 1.33x (target >= 1.50x)", out)
        self.assertIn("- FAIL fio seq write 1M QD4 cmkfs/bindfs: 0.50x (target >= 0.90x)", out)
        self.assertIn("- FAIL daemon peak RSS flat with a 16x disk (1x peak + max(4 MiB, 10%)): "
                      "45.0 MiB (target <= 38.0 MiB)", out)
        self.assertIn("9 of 12 PASS", out)
        rc, out2, err = report(self.dir, "--enforce")
        self.assertEqual(rc, 4)
        self.assertEqual(out2, out)
        self.assertIn("3 of 12 targets not met", err)

    def test_enforce_counts_a_target_not_checked(self):
        shutil.rmtree(self.dir)
        os.mkdir(self.dir)
        make_results(self.dir, systems="raw,cmkfs")
        rc, out, err = report(self.dir)
        self.assertEqual(rc, 0, err)  # systems not run lack no figure
        self.assertIn("- SKIP fio seq write 1M QD4 cmkfs/gocryptfs: not run (gocryptfs)", out)
        self.assertIn("- PASS daemon peak RSS after the whole run", out)
        rc, _, err = report(self.dir, "--enforce")
        self.assertEqual(rc, 4)
        self.assertIn("10 of 12 targets not met", err)

    def test_missing_figure_wins_over_enforce(self):
        os.remove(self.path("cpu-cmkfs-randwrite.txt"))
        write(self.path("fio-cmkfs-seqwrite.json"), fio_json("seqwrite", 100))
        rc, _, err = report(self.dir, "--enforce")
        self.assertEqual(rc, 3)
        self.assertEqual(err.splitlines(), [
            "missing figure: cmkfs: daemon CPU per GiB during fio randwrite: "
            "cpu-cmkfs-randwrite.txt not found"])

    def test_gzipped_fio_json_reads_the_same(self):
        _, plain, _ = report(self.dir)
        for name in os.listdir(self.dir):
            if name.endswith(".json"):
                with open(self.path(name), "rb") as f, gzip.open(self.path(name) + ".gz", "wb") as g:
                    g.write(f.read())
                os.remove(self.path(name))
        rc, out, err = report(self.dir)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, plain)

    def test_results_not_a_directory_is_a_usage_error(self):
        rc, _, err = report(self.path("nope"))
        self.assertEqual(rc, 2)
        self.assertIn("is not a directory", err)


class RunShArgumentsTest(unittest.TestCase):
    def run_sh(self, *args):
        return subprocess.run(["bash", RUN_SH, *args], capture_output=True, text=True, timeout=60)

    def test_bad_arguments_are_refused_before_anything_runs(self):
        for args, says in ((["--bogus"], "unknown argument '--bogus'; accepted: "),
                           (["--systems", "raw,zfs"], "unknown system 'zfs'")):
            p = self.run_sh(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(says, p.stderr)

    def test_help_documents_enforce_and_record(self):
        p = self.run_sh("--help")
        self.assertEqual(p.returncode, 0)
        for flag in ("--enforce", "--record", "--note TEXT", "docs/bench/"):
            self.assertIn(flag, p.stdout)


def results_log_entries():
    with open(DOC) as f:
        text = f.read()
    log = text.split("\n## Results log\n", 1)[1]
    log = re.split(r"\n## ", log, 1)[0]
    parts = re.split(r"\n(?=### Run )", log)
    return parts[0], [p.strip("\n") for p in parts[1:]]


class ReportV2Test(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bench-report-test.")
        make_v2_results(self.dir)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_complete_run_meets_every_target(self):
        rc, out, err = report(self.dir, "--enforce")
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        self.assertIn("Targets (issues 9 and 23, from this run): 19 of 19 PASS", out)
        self.assertIn("| cmkfs disk, backing_io = direct | 1000 | 900 | 40.0K | 30.0K | 4.9K |", out)
        # 8 x (6000 + 2600) minus 600: aggregate, slowest, fastest, fairness.
        self.assertIn("| cmkfs disks | 68.2K | 8.0K | 8.6K | 0.93x | 0.85x |", out)
        self.assertIn("| cmkfs disks | 4.8K | 900 | 0.19x | 1 |", out)
        self.assertIn("| cmkfs disks, backing_io = direct | 512 | 10 | 1.9% |", out)
        self.assertIn("- PASS page cache growth of a direct write (at most 10% of the bytes "
                      "written): 9.8 MiB (target <= 51.2 MiB)", out)

    def test_unfair_disks_and_cached_direct_writes_fail_their_targets(self):
        write(os.path.join(self.dir, "fio-cmkfs-many.json"), multi_fio_json(
            [("disk0", 1000, 400)] + [(f"disk{i}", 6000, 2600) for i in range(1, 8)]))
        write(os.path.join(self.dir, "cached-cmkfsd.txt"), "100000 600000 512\n")
        rc, out, err = report(self.dir, "--enforce")
        self.assertEqual(rc, 4, err)
        self.assertIn("- FAIL 8 disks fairness (min/max) cmkfs: 0.16x (target >= 0.80x)", out)
        self.assertRegex(out, r"- FAIL page cache growth of a direct write .*: 488.3 MiB")

    def test_missing_many_disks_figure_names_system(self):
        os.remove(os.path.join(self.dir, "fio-cmkfsd-many.json"))
        rc, _, err = report(self.dir)
        self.assertEqual(rc, 3)
        self.assertIn("missing figure: cmkfsd: fio on 8 files at once: fio-cmkfsd-many.json "
                      "not found", err)

    def test_missing_direct_fsync_figure_names_system_and_job(self):
        os.remove(os.path.join(self.dir, "fio-cmkfsd-fsync.json"))
        rc, _, err = report(self.dir)
        self.assertEqual(rc, 3)
        self.assertIn("missing figure: cmkfsd: fio fsync: fio-cmkfsd-fsync.json not found",
                      err)


class RecordedResultsTest(unittest.TestCase):
    """Every entry of the results log is report.py's output for raw results
    kept in docs/bench/ (what run.sh --record writes), and nothing else is."""

    def test_every_entry_is_the_report_of_its_raw_results(self):
        _, entries = results_log_entries()
        self.assertGreater(len(entries), 0, "docs/BENCHMARKS.md has no recorded run")
        referenced = set()
        for entry in entries:
            title = entry.splitlines()[0]
            m = re.search(r"raw results \(fio JSON, qemu-io output, CPU and RSS samples\): "
                          r"\[(bench/[^/\]]+)/\]\(\1/\)", entry)
            self.assertIsNotNone(m, f"{title}: no link to its raw results in docs/bench/ "
                                    "(not written by run.sh --record)")
            raw = os.path.join(REPO, "docs", m.group(1))
            self.assertTrue(os.path.isdir(raw), f"{title}: {raw} does not exist")
            referenced.add(os.path.basename(raw))
            rc, out, err = report(raw)
            self.assertIn(rc, (0, 4), f"{title}: report.py exited {rc}: {err}")
            self.assertEqual(out.strip("\n"), entry,
                             f"{title}: the entry differs from report.py's output for {raw}")
            size = sum(os.path.getsize(os.path.join(raw, n)) for n in os.listdir(raw))
            self.assertLess(size, 1 << 20, f"{raw} holds {size} bytes")
            self.assertTrue(any(n.endswith(".json.gz") for n in os.listdir(raw)), raw)
        kept = set(os.listdir(os.path.join(REPO, "docs", "bench")))
        self.assertEqual(kept, referenced, "docs/bench/ holds runs the results log does not show")

    def test_log_has_no_text_outside_entries(self):
        intro, _ = results_log_entries()
        self.assertNotIn("|", intro)
        self.assertNotRegex(intro, r"(?i)\b(PASS|FAIL)\b")


if __name__ == "__main__":
    unittest.main(verbosity=2)
