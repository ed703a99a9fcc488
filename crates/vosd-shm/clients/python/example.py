#!/usr/bin/env python3
"""Print one line per frame published by a vosd pipeline.

    python3 crates/vosd-shm/clients/python/example.py /vosd-cam0 [frames] [timeout_s]

Reads frames in order until `frames` were printed (default 100; 0 = until
the writer ends), the writer ends, or no frame arrives for `timeout_s`
seconds (default 10). Line format (same as example.c beside it):

  frame=F seq=S skipped=K latency_ms=L objects=N nonzero=Z | id=I area=A bbox=[x0,y0,x1,y1) vis=V | ...

The last line has the writer's pipeline statistics (ABI >= 2 segments):

  stats captured=C dropped=D capture_errors=E reconnects=R source=ok|lost
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import vosd_reader  # noqa: E402


def open_with_retry(name, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return vosd_reader.Reader(name)
        except (vosd_reader.NotFound, vosd_reader.NotReady):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def main(argv):
    if len(argv) < 2:
        print("usage: %s /shm-name [frames] [timeout_s]" % argv[0], file=sys.stderr)
        return 2
    name = argv[1]
    frames = int(argv[2]) if len(argv) > 2 else 100
    timeout = float(argv[3]) if len(argv) > 3 else 10.0
    try:
        reader = open_with_retry(name, timeout)
    except vosd_reader.ShmError as e:
        print(e, file=sys.stderr)
        return 1
    with reader:
        print(
            "opened %s: %dx%d mask, %d slots, %d objects max, ABI %d, writer pid %d"
            % (name, reader.width, reader.height, reader.slot_count, reader.max_objects,
               reader.abi_version, reader.writer_pid),
            file=sys.stderr,
        )
        frame = reader.new_frame()
        printed = 0
        while frames == 0 or printed < frames:
            try:
                status = reader.wait_next(frame, timeout)
            except vosd_reader.ShmError as e:
                print(e, file=sys.stderr)
                return 1
            if status == "ended":
                print("end of stream")
                break
            if status == "empty":
                print("no frame for %.1f s" % timeout, file=sys.stderr)
                break
            parts = [
                "frame=%d seq=%d skipped=%d latency_ms=%.3f objects=%d nonzero=%d"
                % (frame.frame_number, frame.seq, frame.skipped, frame.latency_ms,
                   frame.object_count, int(np.count_nonzero(frame.mask)))
            ]
            for o in frame.objects:
                x0, y0, x1, y1 = (int(v) for v in o["bbox"])
                parts.append(
                    "id=%d area=%d bbox=[%d,%d,%d,%d) vis=%s"
                    % (o["id"], o["area"], x0, y0, x1, y1,
                       vosd_reader.VISIBILITY_NAMES.get(int(o["visibility"]), "unknown"))
                )
            print(" | ".join(parts), flush=True)
            printed += 1
        stats = reader.stats()
        if stats is None:
            print("stats none (ABI %d segment)" % reader.abi_version)
        else:
            print(
                "stats captured=%d dropped=%d capture_errors=%d reconnects=%d source=%s"
                % (stats["frames_captured"], stats["frames_dropped"], stats["capture_errors"],
                   stats["reconnects"], "lost" if stats["camera_lost"] else "ok")
            )
        print("%d frames, %d torn copies retried" % (printed, reader.torn_retries), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
