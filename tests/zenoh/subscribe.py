#!/usr/bin/env python3
"""An independent ROS 2-over-Zenoh subscriber for vosd's topics.

Uses eclipse-zenoh (PyPI, the zenoh crate's version) and rosbags (a pure
Python CDR implementation and REP-2011 type hashing), nothing of vosd's own
code. It finds vosd's node and publishers by their rmw_zenoh liveliness
tokens, checks the tokens (kind, names, QoS) and that each token's type hash
equals the RIHS01 hash rosbags computes for the type, subscribes to the key
expressions the tokens name, decodes every sample with rosbags, checks the
attachments (sequence numbers increase, 16-byte GID) and the stamps
(increase), and writes what it received for tests/integration/zenoh.rs:

  OUT/records.jsonl   one line per sample (topic, stamp, decoded fields)
  OUT/masks/STAMP.bin the decoded mask data of each Image
  OUT/summary.json    tokens, hashes and counts

Exit status: 0 when every check passed, 1 with a FAIL line otherwise, 77
with a SKIP line when the Python packages are missing.

  python3 tests/zenoh/subscribe.py --connect tcp/127.0.0.1:7448 --out /tmp/z --masks 40
  python3 tests/zenoh/subscribe.py --connect tcp/127.0.0.1:7448 --bench 300
"""

import argparse
import json
import os
import queue
import sys
import time
from pathlib import Path

try:
    import zenoh
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIP: {e} (pip install eclipse-zenoh==1.10.2 rosbags==0.11.9)")
    sys.exit(77)

# vision_msgs 4.1.1 (ros-perception/vision_msgs, branch ros2), the message
# definitions as published (comments dropped).
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/Detection2D": (
        "std_msgs/Header header\nObjectHypothesisWithPose[] results\n"
        "BoundingBox2D bbox\nstring id\n"
    ),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
}

ROS_TYPES = {
    "mask": "sensor_msgs/msg/Image",
    "detections": "vision_msgs/msg/Detection2DArray",
    "states": "vosd_msgs/msg/ObjectStateArray",
}
SENSOR_DATA_QOS = "2::,5:,:,:,,"


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def typestore_with_vosd(msg_dir):
    ts = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    for path in sorted(Path(msg_dir).glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vosd_msgs/msg/{path.stem}"))
    ts.register(types)
    return ts


def dds_name(ros_type):
    pkg, kind, name = ros_type.split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


def open_session(endpoint, deadline):
    conf = zenoh.Config()
    conf.insert_json5("mode", '"client"')
    conf.insert_json5("connect/endpoints", json.dumps([endpoint]))
    conf.insert_json5("scouting/multicast/enabled", "false")
    last = None
    while time.monotonic() < deadline:
        try:
            return zenoh.open(conf)
        except Exception as e:  # the daemon is not listening yet
            last = e
            time.sleep(0.2)
    fail(f"cannot connect to {endpoint}: {last}")


def find_tokens(session, domain, ns, node, deadline):
    """The node's NN token and its three MP tokens, by topic."""
    want = {f"{ns.rstrip('/')}/{node}/{rel}": rel for rel in ROS_TYPES}
    while time.monotonic() < deadline:
        keys = [str(r.ok.key_expr) for r in session.liveliness().get(f"@ros2_lv/{domain}/**")
                if r.ok is not None]
        nodes = [k for k in keys if k.split("/")[5:6] == ["NN"]]
        pubs = {}
        for k in keys:
            parts = k.split("/")
            if len(parts) == 13 and parts[5] == "MP":
                topic = parts[9].replace("%", "/")
                if topic in want:
                    pubs[want[topic]] = parts
        if nodes and len(pubs) == len(want):
            return keys, nodes, pubs
        time.sleep(0.2)
    fail(f"liveliness tokens of node {ns} {node} not all seen")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--out")
    ap.add_argument("--masks", type=int, default=40,
                    help="stop after this many messages of each topic")
    ap.add_argument("--bench", type=int, default=0,
                    help="only measure capture-to-callback latency over this many masks")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--domain", type=int, default=0)
    ap.add_argument("--namespace", default="/")
    ap.add_argument("--node", default="vosd")
    ap.add_argument("--ros2dds-keys", action="store_true",
                    help="also expect each message on the zenoh-bridge-ros2dds key (ns/node/topic)")
    ap.add_argument("--msg-dir", default=str(Path(__file__).resolve().parents[2] / "ros/vosd_msgs/msg"))
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout

    ts = typestore_with_vosd(args.msg_dir)
    session = open_session(args.connect, deadline)
    keys, nodes, pubs = find_tokens(session, args.domain, args.namespace, args.node, deadline)

    # Tokens: kind, names, QoS and the type hash against rosbags' REP-2011.
    mangled_ns = args.namespace.replace("/", "%")
    node_parts = nodes[0].split("/")
    if node_parts[6:9] != ["%", mangled_ns, args.node]:
        fail(f"node token {nodes[0]}")
    hashes = {}
    for rel, parts in pubs.items():
        ros_type = ROS_TYPES[rel]
        expected = ts.hash_rihs01(ros_type)
        hashes[rel] = {"token": parts[11], "rosbags": expected}
        if parts[10] != dds_name(ros_type):
            fail(f"{rel}: token type {parts[10]}, expected {dds_name(ros_type)}")
        if parts[11] != expected:
            fail(f"{rel}: token type hash {parts[11]} but REP-2011 (rosbags) gives {expected}")
        if parts[12] != SENSOR_DATA_QOS:
            fail(f"{rel}: QoS {parts[12]}, expected the sensor-data profile {SENSOR_DATA_QOS}")
        if parts[6:9] != ["%", mangled_ns, args.node] or parts[2] != node_parts[2]:
            fail(f"{rel}: token {'/'.join(parts)} does not belong to node {nodes[0]}")

    samples = queue.Queue()
    subs = []
    bridged = {}
    for rel, parts in pubs.items():
        topic = parts[9].replace("%", "/").strip("/")
        key = f"{args.domain}/{topic}/{parts[10]}/{parts[11]}"

        def on_sample(sample, rel=rel):
            att = sample.attachment
            samples.put((rel, time.time_ns(), str(sample.key_expr), sample.payload.to_bytes(),
                         att.to_bytes() if att is not None else None))

        subs.append(session.declare_subscriber(key, on_sample))
        if args.ros2dds_keys:
            def on_bridged(sample, rel=rel):
                bridged.setdefault(rel, set()).add(sample.payload.to_bytes())

            subs.append(session.declare_subscriber(topic, on_bridged))

    if args.bench:
        lat = []
        while len(lat) < args.bench and time.monotonic() < deadline:
            try:
                rel, recv_ns, _, payload, _ = samples.get(timeout=1.0)
            except queue.Empty:
                continue
            if rel == "mask":
                # Decoding only the header: the stamp is at offset 4.
                sec = int.from_bytes(payload[4:8], "little", signed=True)
                nsec = int.from_bytes(payload[8:12], "little")
                lat.append((recv_ns - (sec * 10**9 + nsec)) / 1e6)
        lat.sort()
        if not lat:
            fail("no mask received")
        pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
        print(json.dumps({"masks": len(lat), "p50_ms": round(pct(0.5), 2),
                          "p99_ms": round(pct(0.99), 2), "max_ms": round(lat[-1], 2)}))
        return

    out = Path(args.out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    last_seq, last_stamp, counts = {}, {}, {rel: 0 for rel in ROS_TYPES}
    payloads = {rel: [] for rel in ROS_TYPES}
    with open(out / "records.jsonl", "w") as records:
        while time.monotonic() < deadline and min(counts.values()) < args.masks:
            try:
                rel, recv_ns, key, payload, att = samples.get(timeout=1.0)
            except queue.Empty:
                continue
            if payload[:4] != b"\x00\x01\x00\x00":
                fail(f"{rel}: encapsulation header {payload[:4].hex()}, expected 00010000 (CDR_LE)")
            if att is None or len(att) != 33 or att[16] != 16:
                fail(f"{rel}: attachment {att!r} is not seq(8) + timestamp(8) + 16 + GID(16)")
            seq = int.from_bytes(att[0:8], "little", signed=True)
            src_ns = int.from_bytes(att[8:16], "little", signed=True)
            if seq <= last_seq.get(rel, 0):
                fail(f"{rel}: sequence number {seq} after {last_seq.get(rel)}")
            last_seq[rel] = seq
            msg = ts.deserialize_cdr(payload, ROS_TYPES[rel])
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if stamp <= last_stamp.get(rel, 0):
                fail(f"{rel}: stamp {stamp} after {last_stamp.get(rel)}")
            last_stamp[rel] = stamp
            rec = {"topic": rel, "stamp_ns": stamp, "recv_ns": recv_ns, "source_ns": src_ns,
                   "seq": seq, "gid": att[17:].hex(), "frame_id": msg.header.frame_id}
            if rel == "mask":
                rec.update(width=msg.width, height=msg.height, encoding=msg.encoding,
                           step=msg.step, is_bigendian=msg.is_bigendian)
                (out / "masks" / f"{stamp}.bin").write_bytes(bytes(msg.data))
            elif rel == "detections":
                rec["detections"] = [{
                    "id": d.id,
                    "stamp_ns": d.header.stamp.sec * 10**9 + d.header.stamp.nanosec,
                    "cx": d.bbox.center.position.x, "cy": d.bbox.center.position.y,
                    "theta": d.bbox.center.theta, "sx": d.bbox.size_x, "sy": d.bbox.size_y,
                    "scores": [r.hypothesis.score for r in d.results],
                } for d in msg.detections]
            else:
                rec["objects"] = [{
                    "id": o.id, "visibility": o.visibility, "confidence": o.confidence,
                    "area": o.area, "centroid": [o.centroid_x, o.centroid_y],
                    "velocity": [o.velocity_x, o.velocity_y],
                } for o in msg.objects]
            records.write(json.dumps(rec) + "\n")
            counts[rel] += 1
            if args.ros2dds_keys:
                payloads[rel].append(payload)
    if args.ros2dds_keys:
        # The same CDR on the bridge's plain keys (no attachment needed).
        time.sleep(0.5)
        for rel, sent in payloads.items():
            same = sum(p in bridged.get(rel, set()) for p in sent)
            counts[f"{rel}_ros2dds"] = same
            if same < len(sent) // 2:
                fail(f"{rel}: only {same} of {len(sent)} messages also on key "
                     f"{args.namespace.strip('/')}/{args.node}/{rel}".replace("//", "/"))
    # The status queryable: the daemon's statistics as JSON.
    status_key = f"{args.domain}/{args.namespace.strip('/')}/{args.node}/status".replace("//", "/")
    replies = [r.ok for r in session.get(status_key, timeout=5.0) if r.ok is not None]
    if not replies:
        fail(f"no reply from the status queryable {status_key}")
    status = json.loads(replies[0].payload.to_bytes())
    if status.get("published", 0) < counts["mask"] or "dropped_tap" not in status:
        fail(f"status {status}")
    summary = {"tokens": keys, "hashes": hashes, "counts": counts, "status": status}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({"counts": counts, "hashes": hashes}), flush=True)
    for s in subs:
        s.undeclare()
    session.close()
    if min(counts[rel] for rel in ROS_TYPES) < args.masks:
        fail(f"only {counts} messages within {args.timeout} s")


if __name__ == "__main__":
    main()
