"""Read frames published by vosd over POSIX shared memory (ABI version 2;
reads version-1 segments too).

Pure Python + numpy; see LAYOUT.md of the vosd-shm crate (installed as
/usr/share/doc/vosd/shm-layout.md) for the layout and protocol.

    from vosd_reader import Reader

    with Reader("/vosd-cam0") as r:
        frame = r.new_frame()
        while True:
            status = r.read_next(frame)        # or r.read_latest(frame)
            if status == "frame":
                print(frame.frame_number, frame.latency_ms, frame.objects["area"])
                mask = frame.mask               # (height, width) uint8, 0 = background
            elif status == "ended":
                break
            else:                               # "empty": nothing new yet
                time.sleep(0.001)
        stats = r.stats()                       # None for a version-1 segment
        if stats and stats["camera_lost"]:
            print("camera lost,", stats["reconnects"], "reconnection attempts")

The segment is opened O_RDONLY and mapped read-only: this reader can never
modify it. Linux only (the segment is read from /dev/shm).

Memory ordering: Python cannot issue CPU fences. On x86-64 (which keeps
loads in order) the seqlock check below is exact. On ARM the re-check of
the sequence number follows the copy by many interpreter instructions, which
in practice orders it, but it is not an architectural guarantee; use the C
or Rust client where a torn frame must be impossible.
"""

import mmap
import os
import struct
import time

import numpy as np

ABI_VERSION = 2
OLDEST_READABLE_ABI = 1  # oldest segment ABI this reader accepts
STATS_ABI_VERSION = 2  # first ABI with the statistics block in the header
MAGIC = b"VOSDSHM\0"
HEADER_SIZE = 128
SLOT_HEADER_SIZE = 64
OBJECT_RECORD_SIZE = 48
MAX_OBJECTS_LIMIT = 255

STATE_INITIALIZING, STATE_RUNNING, STATE_ENDED = 0, 1, 2
SOURCE_OK, SOURCE_LOST = 0, 1
VISIBILITY_NAMES = {0: "visible", 1: "occluded", 2: "lost"}

# Header fields (native byte order, standard sizes, no padding).
_HEADER = struct.Struct("=8sIIIIIIIIIIQQQIIQQ")
# Offsets of the fields the writer updates.
_H_WRITER_STATE = 76
_H_LATEST_SEQ = 80
# Statistics block (ABI >= 2): u64 frames_captured, u64 frames_dropped,
# u32 capture_errors, u32 reconnects, u32 source_state, u32 reserved.
_H_FRAMES_CAPTURED = 96
_H_CAPTURE_ERRORS = 112
# Slot header: seq, frame_number, capture_ns, publish_ns, object_count.
_SLOT = struct.Struct("=QQQQI")

_MAX_ATTEMPTS = 10000


class ShmError(Exception):
    """Base class of every error this module raises; the message names the segment."""


class NotFound(ShmError):
    """No segment of that name (the pipeline is not running)."""


class NotReady(ShmError):
    """The writer is still initialising the segment; retry shortly."""


class Truncated(ShmError):
    """The segment is smaller than its header or than what the header describes."""


class BadMagic(ShmError):
    """Not a vosd segment."""


class AbiMismatch(ShmError):
    """The segment's ABI version cannot be read by this reader."""


class BadLayout(ShmError):
    """The header's geometry is inconsistent."""


class Corrupt(ShmError):
    """A slot passed the seqlock check but holds impossible content."""


class Starved(ShmError):
    """The writer overwrote the slot on every attempt (reader too slow for the ring)."""


def object_dtype(stride=OBJECT_RECORD_SIZE):
    """numpy dtype of one object record (itemsize = the segment's object stride)."""
    return np.dtype(
        {
            "names": ["id", "visibility", "area", "bbox", "centroid", "velocity", "confidence"],
            "formats": ["=u4", "u1", "=u4", ("=u4", (4,)), ("=f4", (2,)), ("=f4", (2,)), "=f4"],
            "offsets": [0, 4, 8, 12, 28, 36, 44],
            "itemsize": stride,
        }
    )


class Frame:
    """A copy of one published frame; refilled in place by every read.

    Attributes: seq (publish sequence number, 1-based), skipped (frames
    passed over since the previous read), frame_number, capture_ns and
    publish_ns (CLOCK_MONOTONIC), objects (numpy structured array with
    fields id, visibility, area, bbox [x0, y0, x1, y1) , centroid [x, y],
    velocity [vx, vy] px/s, confidence), mask ((height, width) uint8).
    """

    def __init__(self, width, height, max_objects, stride=OBJECT_RECORD_SIZE):
        self.seq = 0
        self.skipped = 0
        self.frame_number = 0
        self.capture_ns = 0
        self.publish_ns = 0
        self._objects = np.zeros(max(max_objects, 1), dtype=object_dtype(stride))
        self.object_count = 0
        self.mask = np.zeros((height, width), dtype=np.uint8)

    @property
    def objects(self):
        """The valid object records (a view of the frame's buffer)."""
        return self._objects[: self.object_count]

    @property
    def latency_ms(self):
        """Publish minus capture time in milliseconds."""
        return (self.publish_ns - self.capture_ns) / 1e6


class Reader:
    """A read-only view of a vosd segment."""

    def __init__(self, name):
        self.name = name
        self.last_seq = 0
        self.torn_retries = 0
        self._mm = None
        if not isinstance(name, str) or not name.startswith("/") or len(name) < 2 or "/" in name[1:]:
            raise ShmError("shm name %r is invalid: expected '/name'" % (name,))
        path = "/dev/shm/" + name[1:]
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound("shm '%s' does not exist (is the vosd pipeline running?)" % name) from None
        except OSError as e:
            raise ShmError("shm '%s': open (read-only) failed: %s" % (name, e)) from None
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise NotReady("shm '%s' is not initialised yet (writer starting); retry" % name)
            if size < HEADER_SIZE:
                raise Truncated("shm '%s' is truncated: %d bytes, need %d (header)" % (name, size, HEADER_SIZE))
            self._mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        try:
            self._validate(size)
        except Exception:
            self.close()
            raise

    def _validate(self, size):
        name, mm = self.name, self._mm
        state = struct.unpack_from("=I", mm, _H_WRITER_STATE)[0]
        (magic, abi, compat, header_size, slot_count, width, height, max_objects, object_stride,
         objects_offset, mask_offset, slot_stride, slots_offset, total_size, writer_pid, _state,
         _latest, start_ns) = _HEADER.unpack_from(mm, 0)
        if magic == b"\0" * 8 and state == STATE_INITIALIZING:
            raise NotReady("shm '%s' is not initialised yet (writer starting); retry" % name)
        if magic != MAGIC:
            raise BadMagic("shm '%s' is not a vosd segment: bad magic %r" % (name, magic))
        # Newer compatible segments, and older ones this reader knows.
        if not (compat <= ABI_VERSION and compat <= abi and abi >= OLDEST_READABLE_ABI):
            raise AbiMismatch(
                "shm '%s' has ABI version %d (readable by ABI %d..=%d), this reader implements ABI %d"
                % (name, abi, compat, abi, ABI_VERSION)
            )
        if state == STATE_INITIALIZING:
            raise NotReady("shm '%s' is not initialised yet (writer starting); retry" % name)

        def bad(reason):
            raise BadLayout("shm '%s' has an invalid layout: %s" % (name, reason))

        if header_size < HEADER_SIZE:
            bad("header_size %d" % header_size)
        if slot_count == 0:
            bad("slot_count is 0")
        if width == 0 or height == 0:
            bad("mask geometry %dx%d is empty" % (width, height))
        if max_objects > MAX_OBJECTS_LIMIT:
            bad("max_objects %d" % max_objects)
        if object_stride < OBJECT_RECORD_SIZE or object_stride % 8:
            bad("object_stride %d" % object_stride)
        if objects_offset < SLOT_HEADER_SIZE or objects_offset % 8:
            bad("objects_offset %d" % objects_offset)
        mask_len = width * height
        if mask_offset % 8 or mask_offset < objects_offset + object_stride * max_objects:
            bad("mask_offset %d overlaps the object array" % mask_offset)
        if slot_stride % 8 or slot_stride < (mask_offset + mask_len + 7) // 8 * 8:
            bad("slot_stride %d is too small" % slot_stride)
        if slots_offset % 8 or slots_offset < header_size:
            bad("slots_offset %d" % slots_offset)
        if total_size != slots_offset + slot_count * slot_stride:
            bad("total_size %d does not match the ring" % total_size)
        if total_size > size:
            raise Truncated("shm '%s' is truncated: %d bytes, need %d (slot ring)" % (name, size, total_size))

        self.abi_version = abi
        self.width, self.height = width, height
        self.max_objects, self.slot_count = max_objects, slot_count
        self.writer_pid, self.writer_start_ns = writer_pid, start_ns
        self._object_stride = object_stride
        self._objects_offset = objects_offset
        # Per-slot numpy views (no copies): seq word, object records, mask.
        u8 = np.frombuffer(mm, dtype=np.uint8)
        u64 = np.frombuffer(mm, dtype="=u8", count=total_size // 8)
        self._u8, self._u64 = u8, u64
        dt = object_dtype(object_stride)
        self._slots = []
        for i in range(slot_count):
            base = slots_offset + i * slot_stride
            objs = np.frombuffer(mm, dtype=dt, count=max_objects, offset=base + objects_offset) if max_objects else None
            mask = u8[base + mask_offset: base + mask_offset + mask_len].reshape(height, width)
            self._slots.append((base, objs, mask))
        self._state_view = np.frombuffer(mm, dtype="=u4", count=1, offset=_H_WRITER_STATE)
        self._latest_view = u64[_H_LATEST_SEQ // 8: _H_LATEST_SEQ // 8 + 1]
        # Statistics: two u64 and three u32 words (each read as one aligned load).
        self._stats64 = u64[_H_FRAMES_CAPTURED // 8: _H_FRAMES_CAPTURED // 8 + 2]
        self._stats32 = np.frombuffer(mm, dtype="=u4", count=3, offset=_H_CAPTURE_ERRORS)
        # read_next starts with the newest frame at open (or the first one).
        self.last_seq = max(int(self._latest_view[0]) - 1, 0)

    # -- public API ----------------------------------------------------------

    def new_frame(self):
        """A frame buffer sized for this segment."""
        return Frame(self.width, self.height, self.max_objects, self._object_stride)

    def writer_state(self):
        """STATE_INITIALIZING, STATE_RUNNING or STATE_ENDED."""
        return int(self._state_view[0])

    def latest_seq(self):
        """Sequence number of the newest published frame (0: none yet)."""
        return int(self._latest_view[0])

    def stats(self):
        """The writer's live pipeline statistics, read now, or None for a
        segment older than ABI version 2 (its writer publishes none).

        A dict: frames_captured, frames_dropped, capture_errors, reconnects
        (ints) and camera_lost (bool: the camera is lost and being reopened;
        no frames arrive until it is back). The writer refreshes them after
        every frame and periodically while none arrive. Each field is read
        on its own (no seqlock): exact, but not all from the same instant.
        """
        if self.abi_version < STATS_ABI_VERSION:
            return None
        return {
            "frames_captured": int(self._stats64[0]),
            "frames_dropped": int(self._stats64[1]),
            "capture_errors": int(self._stats32[0]),
            "reconnects": int(self._stats32[1]),
            "camera_lost": int(self._stats32[2]) == SOURCE_LOST,
        }

    def writer_alive(self):
        """Whether the writer process exists (kill(pid, 0))."""
        try:
            os.kill(self.writer_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def read_next(self, frame):
        """Copy the frame after the last one read into `frame`.

        Returns "frame", "empty" (nothing new) or "ended". When the writer
        lapped the reader, jumps to the oldest frame still in the ring (or,
        if that one is overwritten while being copied, to the newest) and
        sets frame.skipped. A new reader starts with the newest frame at the
        time it opened (or the first frame, if it opened before any was
        published).
        """
        return self._read(frame, False)

    def read_latest(self, frame):
        """Copy the newest frame into `frame`; returns as read_next."""
        return self._read(frame, True)

    def wait_next(self, frame, timeout):
        """read_next, polling until a frame arrives, the writer ends, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        nap = 50e-6
        while True:
            status = self._read(frame, False)
            if status != "empty" or time.monotonic() >= deadline:
                return status
            time.sleep(nap)
            nap = min(nap * 2, 1e-3)

    def close(self):
        """Unmap the segment (the reader is unusable afterwards)."""
        self._slots = []
        self._u8 = self._u64 = self._state_view = self._latest_view = None
        self._stats64 = self._stats32 = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- protocol --------------------------------------------------------------

    def _read(self, frame, latest_only):
        ring = self.slot_count
        # After a missed copy, take the newest frame: the oldest slot is the
        # next one the writer overwrites, so chasing it starves a slow reader.
        missed = False
        for attempt in range(_MAX_ATTEMPTS):
            state = int(self._state_view[0])  # state before latest: "ended" implies latest is final
            latest = int(self._latest_view[0])
            if latest == 0 or latest <= self.last_seq:
                return "ended" if state == STATE_ENDED else "empty"
            if latest_only or missed:
                want = latest
            else:
                want = max(self.last_seq + 1, max(latest - (ring - 1), 1))
            got = self._try_copy(want, frame)
            if got:
                frame.skipped = want - self.last_seq - 1
                self.last_seq = want
                return "frame"
            missed = True
            if attempt >= 16:
                time.sleep(0)
        raise Starved("shm '%s': no consistent copy after %d attempts" % (self.name, _MAX_ATTEMPTS))

    def _try_copy(self, seq, frame):
        base, objs, mask = self._slots[(seq - 1) % self.slot_count]
        seq_index = base // 8
        s1 = int(self._u64[seq_index])
        if s1 != 2 * seq:
            return False  # being written, overwritten, or never written
        _, frame_number, capture_ns, publish_ns, raw_count = _SLOT.unpack_from(self._mm, base)
        count = min(raw_count, self.max_objects)
        if count:
            frame._objects[:count] = objs[:count]
        np.copyto(frame.mask, mask)
        s2 = int(self._u64[seq_index])
        if s2 != s1:
            self.torn_retries += 1
            return False
        if raw_count > self.max_objects:
            self.last_seq = seq
            raise Corrupt("shm '%s': slot of publish %d is corrupt: object_count exceeds max_objects" % (self.name, seq))
        frame.seq = seq
        frame.frame_number = frame_number
        frame.capture_ns = capture_ns
        frame.publish_ns = publish_ns
        frame.object_count = count
        return True
