#!/usr/bin/env python3
"""Training smoke test: caches for 2 short sequences, a few training iterations on all three clip
kinds, a resume, a fold-style evaluation and the ONNX export checked against PyTorch. Under a
minute on 2 cores; prints SKIP and exits 0 where torch (or the data) is missing.

    python training/test_smoke.py
"""

import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    try:
        import torch  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e.name} is not installed (pip install -r training/requirements.txt)")
        return 0
    import data

    if not os.path.isdir(os.path.join(data.DEFAULT_DAVIS, "JPEGImages")):
        print(f"SKIP: no DAVIS data at {data.DEFAULT_DAVIS}")
        return 0
    import export_onnx
    import train

    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="vosd-train-smoke-")
    try:
        common = [
            "--fold", "smoke", "--sequences", "dog-agility,rollerblade", "--val-sequences", "dog-agility",
            "--cache", os.path.join(tmp, "cache"), "--out", os.path.join(tmp, "run"), "--batch", "2",
            "--synth-per-seq", "2", "--comp-clips", "3", "--warmup", "2", "--eval-every", "1000",
        ]
        train.main(common + ["--steps", "4"])
        assert os.path.exists(os.path.join(tmp, "run", "last.pt"))
        # resume: continues from step 4 to 8, evaluates, exports
        net = train.main(common + ["--steps", "8", "--eval-every", "8", "--export", os.path.join(tmp, "onnx")])
        log = open(os.path.join(tmp, "run", "train.log")).read()
        assert "resumed from" in log and "EVAL step 8" in log, log
        for name in ("key.onnx", "value.onnx", "decoder.onnx", "testvector.json"):
            assert os.path.exists(os.path.join(tmp, "onnx", name)), name
        err = export_onnx.check_testvector(os.path.join(tmp, "onnx"))
        assert err < 1e-3, err
        del net
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"OK: training smoke test in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
