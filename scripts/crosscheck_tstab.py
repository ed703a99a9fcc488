#!/usr/bin/python3
"""Cross-check vosd's temporal stability T against the DAVIS toolkit's own
code, built from source on this machine.

The toolkit's T is `db_eval_t_stab` (python/lib/davis/measures/t_stability.py)
over a C++ module `tstab` (python/cpp/polycont/python.cpp with Boost.Python,
Boost.NumPy, Boost.Graph, Eigen, psimpl and clipper) in the public repository
fperazzi/davis-2017 (the same files as fperazzi/davis, DAVIS 2016). This
script

1. extracts those files from a git snapshot of that repository (--toolkit,
   a git directory or a work tree) into a temporary folder; nothing of the
   toolkit is kept or committed;
2. builds `tstab` there with g++ against the system Boost.Python/NumPy
   (Boost >= 1.63 ships Boost.NumPy as boost/python/numpy.hpp: the include
   and namespace are patched for that) and the snapshot's own Eigen;
3. imports t_stability.py with `np.int` restored (removed in numpy 1.24;
   it was the builtin int) and its float bin counts (5.0, 12.0) written as
   ints, which numpy now requires for sizes;
4. for each sequence computes, as DAVIS 2016's loader.py does, per-frame T of
   the predicted masks DIR/SEQ/*.png (object 1: pixel == 1, or != 0 for
   0/255 masks) on each pair of consecutive frames 1..n-2, times 5, and
   compares it with vosd's `t_per_frame` (first object) and `t_mean` in the
   JSON that `vosd eval --json` wrote for the same masks.

Prints a table and the largest difference; exits 1 when a difference
exceeds --tolerance (NaN must match NaN), 2 on unusable input.

Needs (Debian 12): g++ python3-dev python3-numpy python3-scipy python3-pil
libboost-python-dev libboost-numpy-dev libboost-graph-dev. Run it with the
system python3 (its numpy matches libboost_numpy's ABI):

    target/ci/vosd eval --davis ../shared/data/davis2016 \\
        --sequences bear,blackswan --out OUT --json eval.json
    /usr/bin/python3 scripts/crosscheck_tstab.py \\
        --toolkit /path/to/davis-2017 --results OUT --vosd-json eval.json
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

TOOLKIT_PATHS = [
    "python/cpp/polycont",
    "python/cpp/psimpl",
    "python/cpp/clipper",
    "python/cpp/Eigen",
    "python/lib/davis/measures/t_stability.py",
]


def extract(toolkit, dest):
    """Copies the toolkit files out of a git dir or work tree into dest."""
    git = ["git", "--git-dir", toolkit] if not os.path.isdir(
        os.path.join(toolkit, ".git")) else ["git", "-C", toolkit]
    archive = subprocess.run(git + ["archive", "HEAD"] + TOOLKIT_PATHS,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    rev = subprocess.run(git + ["rev-parse", "HEAD"], check=True,
                         capture_output=True, text=True).stdout.strip()
    return rev


def build(dest):
    """Builds tstab.so in dest/python/cpp from the extracted sources."""
    cpp = os.path.join(dest, "python", "cpp")
    src = os.path.join(cpp, "polycont", "python.cpp")
    text = open(src).read()
    text = text.replace("#include <boost/numpy.hpp>",
                        "#include <boost/python/numpy.hpp>")
    text = text.replace("namespace np = boost::numpy;",
                        "namespace np = boost::python::numpy;")
    open(src, "w").write(text)
    pyinc = subprocess.run(["python3-config", "--includes"], check=True,
                           capture_output=True, text=True).stdout.split()
    ver = "%d%d" % sys.version_info[:2]
    out = os.path.join(cpp, "tstab.so")
    cmd = (["g++", "-O2", "-shared", "-fPIC", "-std=c++14", "-w",
            "-DBOOST_BIND_GLOBAL_PLACEHOLDERS",
            "-I" + cpp, "-I" + os.path.join(cpp, "polycont")] + pyinc +
           [src, os.path.join(cpp, "clipper", "clipper.cpp"), "-o", out,
            "-lboost_python" + ver, "-lboost_numpy" + ver])
    subprocess.run(cmd, check=True)
    return cpp


def load_toolkit(dest):
    cpp = build(dest)
    sys.path.insert(0, cpp)
    # Removed from numpy 1.24; t_stability.py uses it as the builtin int.
    if "int" not in np.__dict__:
        np.int = int
    path = os.path.join(dest, "python", "lib", "davis", "measures",
                        "t_stability.py")
    source = open(path).read()
    # numpy >= 1.18 refuses float sizes (logspace's num, zeros' shape); the
    # toolkit's bin counts are whole numbers written as floats (5.0, 12.0).
    # Every use divides by them with Python 3's true division or uses them
    # as sizes, so ints give the same values.
    for old, new in (("nbins_r     = 5.0", "nbins_r     = 5"),
                     ("nbins_theta = 12.0", "nbins_theta = 12")):
        if old not in source:
            raise SystemExit("%s: expected '%s' to patch" % (path, old))
        source = source.replace(old, new)
    namespace = {"__name__": "t_stability"}
    exec(compile(source, path, "exec"), namespace)
    return namespace["db_eval_t_stab"]


def read_masks(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    if not files:
        raise SystemExit("%s: no masks" % folder)
    masks = []
    for f in files:
        a = np.array(Image.open(os.path.join(folder, f)))
        if a.ndim == 3:
            a = a[..., 0]
        vals = np.unique(a)
        binary = a != 0 if set(vals.tolist()) <= {0, 255} else a == 1
        masks.append(binary)
    return masks


def same(a, b, tol):
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return False
    return abs(a - b) <= tol


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--toolkit", required=True,
                   help="fperazzi/davis-2017 git dir or work tree")
    p.add_argument("--results", required=True, help="DIR/SEQ/NNNNN.png")
    p.add_argument("--vosd-json", required=True)
    p.add_argument("--sequences", help="comma-separated; default: the JSON's")
    p.add_argument("--tolerance", type=float, default=1e-6)
    args = p.parse_args()

    report = json.load(open(args.vosd_json))
    seqs = (args.sequences.split(",") if args.sequences
            else sorted(report["sequences"]))
    with tempfile.TemporaryDirectory() as tmp:
        rev = extract(args.toolkit, tmp)
        t_stab = load_toolkit(tmp)
        print("toolkit fperazzi/davis-2017 %s, built in %s" % (rev[:12], tmp))
        worst, worst_at, failed = 0.0, None, False
        pairs, spent = 0, 0.0
        print("%-20s %6s %10s %10s %10s" %
              ("sequence", "pairs", "T toolkit", "T vosd", "max |diff|"))
        for seq in seqs:
            entry = report["sequences"].get(seq)
            if entry is None or "t_per_frame" not in entry:
                print("%s: not in %s (or no t_per_frame)" %
                      (seq, args.vosd_json))
                return 2
            masks = read_masks(os.path.join(args.results, seq))
            ev = masks[1:-1]
            ours = []
            for a, b in zip(ev[:-1], ev[1:]):
                t0 = time.perf_counter()
                ours.append(float(t_stab(a, b)) * 5.0)
                spent += time.perf_counter() - t0
                pairs += 1
            theirs = entry["t_per_frame"][0] if entry["t_per_frame"] else []
            if len(theirs) != len(ours):
                print("%s: %d pairs here, %d in vosd's JSON" %
                      (seq, len(ours), len(theirs)))
                return 2
            seq_worst = 0.0
            for i, (a, b) in enumerate(zip(ours, theirs)):
                if not same(a, b, args.tolerance):
                    failed = True
                if a is not None and b is not None and not (
                        math.isnan(a) or math.isnan(b)):
                    d = abs(a - b)
                    seq_worst = max(seq_worst, d)
                    if d > worst:
                        worst, worst_at = d, (seq, i + 1, a, b)
                elif not same(a, b, 0.0):
                    print("  %s pair %d: toolkit %r, vosd %r" %
                          (seq, i + 1, a, b))
            with np.errstate(all="ignore"):
                tk_mean = float(np.nanmean(ours)) if ours else float("nan")
            v_mean = entry.get("t_mean")
            if not same(tk_mean, v_mean, args.tolerance):
                failed = True
            print("%-20s %6d %10.6f %10s %10.2e" %
                  (seq, len(ours), tk_mean,
                   "null" if v_mean is None else "%.6f" % v_mean, seq_worst))
        print("largest per-frame difference: %.3e%s" % (
            worst, "" if worst_at is None else
            " (%s, pair %d: toolkit %.9f, vosd %.9f)" % worst_at))
        if pairs:
            print("toolkit time: %.1f ms per frame pair (%d pairs)" %
                  (1e3 * spent / pairs, pairs))
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
