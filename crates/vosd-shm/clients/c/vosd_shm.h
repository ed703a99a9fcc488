/*
 * vosd_shm.h — single-file C11 reader for vosd shared-memory segments
 * (ABI version 2; reads version-1 segments too). See LAYOUT.md of the
 * vosd-shm crate (installed as /usr/share/doc/vosd/shm-layout.md) for the
 * layout and protocol.
 *
 * Usage:
 *
 *     #define _POSIX_C_SOURCE 200809L   // before any system header
 *     #include "vosd_shm.h"
 *
 *     vosd_reader r;
 *     if (vosd_open(&r, "/vosd-cam0") != VOSD_OK) { fputs(r.error, stderr); ... }
 *     vosd_frame f;
 *     if (vosd_frame_init(&f, &r) != VOSD_OK) ...      // the only allocation
 *     for (;;) {
 *         int rc = vosd_read_next(&r, &f);   // or vosd_read_latest
 *         if (rc == VOSD_FRAME) { use f.frame_number, f.objects[0..f.object_count), f.mask }
 *         else if (rc == VOSD_EMPTY) { sleep a little }
 *         else if (rc == VOSD_ENDED) break;
 *         else { fprintf(stderr, "%s\n", r.error); break; }
 *     }
 *     vosd_stats st;                          // live pipeline statistics (ABI >= 2)
 *     if (vosd_read_stats(&r, &st)) { use st.frames_captured, st.source_state == VOSD_SOURCE_LOST }
 *     vosd_frame_free(&f);
 *     vosd_close(&r);
 *
 * The segment is opened O_RDONLY and mapped PROT_READ: a reader can never
 * modify it, and a reader killed at any point affects nobody. A reader is
 * not thread-safe; use one vosd_reader per thread.
 *
 * Link with -lrt on glibc older than 2.34. Needs lock-free 64-bit atomic
 * loads that do not write (true on x86-64, AArch64 and ARMv7-A).
 *
 * Licensed under the Apache License, Version 2.0.
 */
#ifndef VOSD_SHM_H
#define VOSD_SHM_H

#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Layout (must match crates/vosd-shm/src/layout.rs) ------------------------- */

#define VOSD_ABI_VERSION 2u
#define VOSD_OLDEST_READABLE_ABI 1u /* oldest segment ABI this reader accepts */
#define VOSD_STATS_ABI_VERSION 2u   /* first ABI with the statistics block */
#define VOSD_MAGIC "VOSDSHM" /* 8 bytes with the terminating NUL */
#define VOSD_HEADER_SIZE 128u
#define VOSD_SLOT_HEADER_SIZE 64u
#define VOSD_OBJECT_RECORD_SIZE 48u
#define VOSD_MAX_OBJECTS_LIMIT 255u

#define VOSD_STATE_INITIALIZING 0u
#define VOSD_STATE_RUNNING 1u
#define VOSD_STATE_ENDED 2u

#define VOSD_SOURCE_OK 0u   /* frames flowing (or capture not started) */
#define VOSD_SOURCE_LOST 1u /* camera lost, reconnecting */

#define VOSD_VISIBLE 0u
#define VOSD_OCCLUDED 1u
#define VOSD_LOST 2u

/** Segment header at offset 0 (128 bytes). */
typedef struct vosd_segment_header {
    uint8_t magic[8];         /*   0 "VOSDSHM\0" */
    uint32_t abi_version;     /*   8 */
    uint32_t compat_version;  /*  12 oldest reader ABI that can read it */
    uint32_t header_size;     /*  16 */
    uint32_t slot_count;      /*  20 */
    uint32_t width;           /*  24 mask width */
    uint32_t height;          /*  28 mask height */
    uint32_t max_objects;     /*  32 */
    uint32_t object_stride;   /*  36 */
    uint32_t objects_offset;  /*  40 within a slot */
    uint32_t mask_offset;     /*  44 within a slot */
    uint64_t slot_stride;     /*  48 */
    uint64_t slots_offset;    /*  56 */
    uint64_t total_size;      /*  64 */
    uint32_t writer_pid;      /*  72 */
    uint32_t writer_state;    /*  76 atomic */
    uint64_t latest_seq;      /*  80 atomic */
    uint64_t start_ns;        /*  88 CLOCK_MONOTONIC */
    /* ABI >= 2: pipeline statistics (atomic; zero in version-1 segments) */
    uint64_t frames_captured; /*  96 frames the source delivered */
    uint64_t frames_dropped;  /* 104 frames dropped by any stage */
    uint32_t capture_errors;  /* 112 bad frames skipped (saturating) */
    uint32_t reconnects;      /* 116 failed reconnection attempts (saturating) */
    uint32_t source_state;    /* 120 VOSD_SOURCE_OK / VOSD_SOURCE_LOST */
    uint32_t reserved;        /* 124 */
} vosd_segment_header;

/** Start of each slot (64 bytes). */
typedef struct vosd_slot_header {
    uint64_t seq;          /*  0 seqlock: 2n-1 writing publish n, 2n complete */
    uint64_t frame_number; /*  8 */
    uint64_t capture_ns;   /* 16 CLOCK_MONOTONIC */
    uint64_t publish_ns;   /* 24 CLOCK_MONOTONIC */
    uint32_t object_count; /* 32 */
    uint32_t reserved0;    /* 36 */
    uint64_t reserved[3];  /* 40 */
} vosd_slot_header;

/** One object's state (48 bytes). */
typedef struct vosd_object {
    uint32_t id;         /*  0 label value in the mask */
    uint8_t visibility;  /*  4 VOSD_VISIBLE / VOSD_OCCLUDED / VOSD_LOST */
    uint8_t reserved[3]; /*  5 */
    uint32_t area;       /*  8 pixels */
    uint32_t bbox[4];    /* 12 x0, y0 inclusive; x1, y1 exclusive */
    float centroid[2];   /* 28 x, y pixels */
    float velocity[2];   /* 36 vx, vy pixels/s */
    float confidence;    /* 44 0..1 */
} vosd_object;

_Static_assert(sizeof(vosd_segment_header) == VOSD_HEADER_SIZE, "header size");
_Static_assert(offsetof(vosd_segment_header, abi_version) == 8, "abi_version");
_Static_assert(offsetof(vosd_segment_header, compat_version) == 12, "compat_version");
_Static_assert(offsetof(vosd_segment_header, slot_count) == 20, "slot_count");
_Static_assert(offsetof(vosd_segment_header, mask_offset) == 44, "mask_offset");
_Static_assert(offsetof(vosd_segment_header, slot_stride) == 48, "slot_stride");
_Static_assert(offsetof(vosd_segment_header, total_size) == 64, "total_size");
_Static_assert(offsetof(vosd_segment_header, writer_state) == 76, "writer_state");
_Static_assert(offsetof(vosd_segment_header, latest_seq) == 80, "latest_seq");
_Static_assert(offsetof(vosd_segment_header, start_ns) == 88, "start_ns");
_Static_assert(offsetof(vosd_segment_header, frames_captured) == 96, "frames_captured");
_Static_assert(offsetof(vosd_segment_header, frames_dropped) == 104, "frames_dropped");
_Static_assert(offsetof(vosd_segment_header, capture_errors) == 112, "capture_errors");
_Static_assert(offsetof(vosd_segment_header, reconnects) == 116, "reconnects");
_Static_assert(offsetof(vosd_segment_header, source_state) == 120, "source_state");
_Static_assert(offsetof(vosd_segment_header, reserved) == 124, "reserved");
_Static_assert(sizeof(vosd_slot_header) == VOSD_SLOT_HEADER_SIZE, "slot header size");
_Static_assert(offsetof(vosd_slot_header, object_count) == 32, "object_count");
_Static_assert(sizeof(vosd_object) == VOSD_OBJECT_RECORD_SIZE, "object size");
_Static_assert(offsetof(vosd_object, area) == 8, "area");
_Static_assert(offsetof(vosd_object, bbox) == 12, "bbox");
_Static_assert(offsetof(vosd_object, centroid) == 28, "centroid");
_Static_assert(offsetof(vosd_object, confidence) == 44, "confidence");
_Static_assert(sizeof(float) == 4, "float is 32-bit");

/* ---- Return codes --------------------------------------------------------- */

enum {
    VOSD_EMPTY = 0,           /* no frame newer than the last one read */
    VOSD_FRAME = 1,           /* a consistent frame was copied */
    VOSD_ENDED = 2,           /* the writer ended; nothing more will come */
    VOSD_OK = 0,              /* vosd_open / vosd_frame_init success */
    VOSD_ERR_NOT_FOUND = -1,  /* no such segment (writer not running) */
    VOSD_ERR_NOT_READY = -2,  /* writer still initialising it: retry */
    VOSD_ERR_TRUNCATED = -3,  /* segment smaller than its header says */
    VOSD_ERR_BAD_MAGIC = -4,  /* not a vosd segment */
    VOSD_ERR_ABI = -5,        /* incompatible ABI version */
    VOSD_ERR_LAYOUT = -6,     /* inconsistent header */
    VOSD_ERR_OS = -7,         /* a system call failed (see error text) */
    VOSD_ERR_CORRUPT = -8,    /* consistent slot with impossible content */
    VOSD_ERR_STARVED = -9,    /* writer overwrote the slot on every attempt */
    VOSD_ERR_NOMEM = -10,     /* allocation failed */
    VOSD_ERR_ARG = -11        /* invalid argument (e.g. bad name) */
};

/** An open segment. Treat fields as read-only. */
typedef struct vosd_reader {
    const uint8_t *base; /* PROT_READ mapping */
    size_t size;         /* mapping length */
    uint32_t abi_version, compat_version;
    uint32_t width, height, max_objects, slot_count;
    uint32_t object_stride, objects_offset, mask_offset;
    uint64_t slot_stride, slots_offset, mask_len;
    uint32_t writer_pid;
    uint64_t last_seq;     /* position: last frame returned; at open, newest - 1 */
    uint64_t torn_retries; /* torn copies detected and retried */
    char name[256];
    char error[320]; /* message of the last error */
} vosd_reader;

/** Live pipeline statistics of the writer (vosd_read_stats). */
typedef struct vosd_stats {
    uint64_t frames_captured; /* frames the source delivered */
    uint64_t frames_dropped;  /* frames dropped by any stage */
    uint32_t capture_errors;  /* bad frames skipped (saturating) */
    uint32_t reconnects;      /* failed camera reconnection attempts (saturating) */
    uint32_t source_state;    /* VOSD_SOURCE_OK, or VOSD_SOURCE_LOST: no frames until it is back */
} vosd_stats;

/** A copy of one frame. Allocate with vosd_frame_init. */
typedef struct vosd_frame {
    uint64_t seq;          /* publish sequence number (1-based) */
    uint64_t skipped;      /* frames passed over since the previous read */
    uint64_t frame_number; /* camera frame number */
    uint64_t capture_ns;   /* CLOCK_MONOTONIC */
    uint64_t publish_ns;   /* CLOCK_MONOTONIC */
    uint32_t object_count;
    uint32_t width, height;
    vosd_object *objects; /* max_objects entries, object_count valid */
    uint8_t *mask;        /* width*height bytes, row-major */
} vosd_frame;

/* ---- Implementation ------------------------------------------------------- */

static inline int vosd__fail(vosd_reader *r, int code, const char *fmt, ...) {
    va_list ap;
    int n = snprintf(r->error, sizeof r->error, "shm '%s': ", r->name);
    if (n < 0 || (size_t)n >= sizeof r->error) return code;
    va_start(ap, fmt);
    vsnprintf(r->error + n, sizeof r->error - (size_t)n, fmt, ap);
    va_end(ap);
    return code;
}

static inline uint32_t vosd__u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t vosd__u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Relaxed atomic loads on the read-only mapping (aligned by layout rules). */
static inline uint64_t vosd__load64(const uint8_t *p) {
    return atomic_load_explicit((const _Atomic uint64_t *)(const void *)p, memory_order_relaxed);
}

static inline uint32_t vosd__load32(const uint8_t *p) {
    return atomic_load_explicit((const _Atomic uint32_t *)(const void *)p, memory_order_relaxed);
}

/** Closes a reader (safe on a zeroed or failed reader). */
static inline void vosd_close(vosd_reader *r) {
    if (r->base != NULL && r->base != MAP_FAILED) munmap((void *)r->base, r->size);
    r->base = NULL;
    r->size = 0;
}

/**
 * Opens segment `name` (e.g. "/vosd-cam0") read-only and validates magic,
 * ABI version and layout against its size. Returns VOSD_OK or a negative
 * VOSD_ERR_*; r->error then says what is wrong.
 */
static inline int vosd_open(vosd_reader *r, const char *name) {
    struct stat st;
    int fd;
    uint8_t h[VOSD_HEADER_SIZE];
    uint32_t state, header_size;
    uint64_t size, objects_end, mask_end, total;
    void *p;

    memset(r, 0, sizeof *r);
    if (name == NULL || name[0] != '/' || name[1] == '\0' || strchr(name + 1, '/') != NULL ||
        strlen(name) >= sizeof r->name) {
        snprintf(r->error, sizeof r->error, "shm name '%s' is invalid: expected \"/name\"",
                 name ? name : "(null)");
        return VOSD_ERR_ARG;
    }
    memcpy(r->name, name, strlen(name) + 1);

    fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return vosd__fail(r, VOSD_ERR_NOT_FOUND, "does not exist (is the vosd pipeline running?)");
        return vosd__fail(r, VOSD_ERR_OS, "shm_open (read-only) failed: %s", strerror(errno));
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vosd__fail(r, VOSD_ERR_OS, "fstat failed: %s", strerror(e));
    }
    size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    if (size == 0) {
        close(fd);
        return vosd__fail(r, VOSD_ERR_NOT_READY, "is not initialised yet (writer starting); retry");
    }
    if (size < VOSD_HEADER_SIZE) {
        close(fd);
        return vosd__fail(r, VOSD_ERR_TRUNCATED, "is truncated: %llu bytes, need %u (header)",
                          (unsigned long long)size, VOSD_HEADER_SIZE);
    }
    if (size > (uint64_t)SIZE_MAX) {
        close(fd);
        return vosd__fail(r, VOSD_ERR_LAYOUT, "is too large to map");
    }
    p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return vosd__fail(r, VOSD_ERR_OS, "mmap (read-only) failed: %s", strerror(errno));
    r->base = (const uint8_t *)p;
    r->size = (size_t)size;

    /* State first, then the header (acquire: a non-initialising state means
     * the header is complete). */
    state = vosd__load32(r->base + offsetof(vosd_segment_header, writer_state));
    atomic_thread_fence(memory_order_acquire);
    memcpy(h, r->base, sizeof h);

    {
        static const uint8_t zero[8] = {0};
        if (memcmp(h, zero, 8) == 0 && state == VOSD_STATE_INITIALIZING) {
            vosd_close(r);
            return vosd__fail(r, VOSD_ERR_NOT_READY, "is not initialised yet (writer starting); retry");
        }
        if (memcmp(h, VOSD_MAGIC, 8) != 0) {
            vosd_close(r);
            return vosd__fail(r, VOSD_ERR_BAD_MAGIC, "is not a vosd segment (bad magic)");
        }
    }
    r->abi_version = vosd__u32(h + 8);
    r->compat_version = vosd__u32(h + 12);
    /* Newer compatible segments, and older ones this reader knows. */
    if (!(r->compat_version <= VOSD_ABI_VERSION && r->compat_version <= r->abi_version &&
          r->abi_version >= VOSD_OLDEST_READABLE_ABI)) {
        int code = vosd__fail(r, VOSD_ERR_ABI,
                              "has ABI version %u (readable by ABI %u..=%u), this reader implements ABI %u",
                              r->abi_version, r->compat_version, r->abi_version, VOSD_ABI_VERSION);
        vosd_close(r);
        return code;
    }
    if (state == VOSD_STATE_INITIALIZING) {
        vosd_close(r);
        return vosd__fail(r, VOSD_ERR_NOT_READY, "is not initialised yet (writer starting); retry");
    }

    header_size = vosd__u32(h + 16);
    r->slot_count = vosd__u32(h + 20);
    r->width = vosd__u32(h + 24);
    r->height = vosd__u32(h + 28);
    r->max_objects = vosd__u32(h + 32);
    r->object_stride = vosd__u32(h + 36);
    r->objects_offset = vosd__u32(h + 40);
    r->mask_offset = vosd__u32(h + 44);
    r->slot_stride = vosd__u64(h + 48);
    r->slots_offset = vosd__u64(h + 56);
    total = vosd__u64(h + 64);
    r->writer_pid = vosd__u32(h + 72);
    r->mask_len = (uint64_t)r->width * r->height;

    /* Every check the Rust reader makes (crates/vosd-shm/src/layout.rs). */
#define VOSD__BAD(...)                                         \
    do {                                                       \
        int code_ = vosd__fail(r, VOSD_ERR_LAYOUT, __VA_ARGS__); \
        vosd_close(r);                                         \
        return code_;                                          \
    } while (0)
    if (header_size < VOSD_HEADER_SIZE) VOSD__BAD("has an invalid layout: header_size %u", header_size);
    if (r->slot_count == 0) VOSD__BAD("has an invalid layout: slot_count is 0");
    if (r->width == 0 || r->height == 0) VOSD__BAD("has an invalid layout: empty mask");
    if (r->max_objects > VOSD_MAX_OBJECTS_LIMIT) VOSD__BAD("has an invalid layout: max_objects %u", r->max_objects);
    if (r->object_stride < VOSD_OBJECT_RECORD_SIZE || r->object_stride % 8 != 0)
        VOSD__BAD("has an invalid layout: object_stride %u", r->object_stride);
    if (r->objects_offset < VOSD_SLOT_HEADER_SIZE || r->objects_offset % 8 != 0)
        VOSD__BAD("has an invalid layout: objects_offset %u", r->objects_offset);
    objects_end = (uint64_t)r->objects_offset + (uint64_t)r->object_stride * r->max_objects;
    if (r->mask_offset % 8 != 0 || r->mask_offset < objects_end)
        VOSD__BAD("has an invalid layout: mask_offset %u", r->mask_offset);
    mask_end = ((uint64_t)r->mask_offset + r->mask_len + 7) & ~(uint64_t)7;
    if (r->slot_stride % 8 != 0 || r->slot_stride < mask_end)
        VOSD__BAD("has an invalid layout: slot_stride %llu", (unsigned long long)r->slot_stride);
    if (r->slots_offset % 8 != 0 || r->slots_offset < header_size)
        VOSD__BAD("has an invalid layout: slots_offset %llu", (unsigned long long)r->slots_offset);
    if (r->slot_stride > (UINT64_MAX - r->slots_offset) / r->slot_count ||
        total != r->slots_offset + r->slot_stride * r->slot_count)
        VOSD__BAD("has an invalid layout: total_size %llu does not match the ring", (unsigned long long)total);
#undef VOSD__BAD
    if (total > size) {
        int code = vosd__fail(r, VOSD_ERR_TRUNCATED, "is truncated: %llu bytes, need %llu (slot ring)",
                              (unsigned long long)size, (unsigned long long)total);
        vosd_close(r);
        return code;
    }
    /* read_next starts with the newest frame at open (or the first one). */
    r->last_seq = vosd__load64(r->base + offsetof(vosd_segment_header, latest_seq));
    if (r->last_seq > 0) r->last_seq--;
    r->error[0] = '\0';
    return VOSD_OK;
}

/** Allocates a frame buffer sized for the reader's segment. */
static inline int vosd_frame_init(vosd_frame *f, const vosd_reader *r) {
    memset(f, 0, sizeof *f);
    f->width = r->width;
    f->height = r->height;
    f->objects = (vosd_object *)calloc(r->max_objects ? r->max_objects : 1, sizeof(vosd_object));
    f->mask = (uint8_t *)malloc((size_t)r->mask_len ? (size_t)r->mask_len : 1);
    if (f->objects == NULL || f->mask == NULL) {
        free(f->objects);
        free(f->mask);
        f->objects = NULL;
        f->mask = NULL;
        return VOSD_ERR_NOMEM;
    }
    return VOSD_OK;
}

/** Frees a frame buffer. */
static inline void vosd_frame_free(vosd_frame *f) {
    free(f->objects);
    free(f->mask);
    f->objects = NULL;
    f->mask = NULL;
}

/** The writer's state (VOSD_STATE_*). */
static inline uint32_t vosd_writer_state(const vosd_reader *r) {
    uint32_t s = vosd__load32(r->base + offsetof(vosd_segment_header, writer_state));
    atomic_thread_fence(memory_order_acquire);
    return s;
}

/** Sequence number of the newest published frame (0: none yet). */
static inline uint64_t vosd_latest_seq(const vosd_reader *r) {
    uint64_t s = vosd__load64(r->base + offsetof(vosd_segment_header, latest_seq));
    atomic_thread_fence(memory_order_acquire);
    return s;
}

/**
 * Reads the writer's live pipeline statistics into *s (relaxed atomic loads,
 * no seqlock: each field is exact, not all from the same instant). The
 * writer refreshes them after every frame and periodically while none
 * arrive, so source_state shows a lost camera while latest_seq stands still.
 * Returns 1, or 0 with *s zeroed for a segment older than ABI version 2
 * (its writer publishes no statistics).
 */
static inline int vosd_read_stats(const vosd_reader *r, vosd_stats *s) {
    const uint8_t *h = r->base;
    memset(s, 0, sizeof *s);
    if (r->abi_version < VOSD_STATS_ABI_VERSION) return 0;
    s->frames_captured = vosd__load64(h + offsetof(vosd_segment_header, frames_captured));
    s->frames_dropped = vosd__load64(h + offsetof(vosd_segment_header, frames_dropped));
    s->capture_errors = vosd__load32(h + offsetof(vosd_segment_header, capture_errors));
    s->reconnects = vosd__load32(h + offsetof(vosd_segment_header, reconnects));
    s->source_state = vosd__load32(h + offsetof(vosd_segment_header, source_state));
    return 1;
}

/** "visible", "occluded", "lost" or "unknown". */
static inline const char *vosd_visibility_name(uint8_t v) {
    switch (v) {
    case VOSD_VISIBLE: return "visible";
    case VOSD_OCCLUDED: return "occluded";
    case VOSD_LOST: return "lost";
    default: return "unknown";
    }
}

/* One seqlock copy of publish `seq`: 1 done, 0 missed (overwritten, being
 * written or torn), VOSD_ERR_CORRUPT. */
static inline int vosd__try_copy(vosd_reader *r, uint64_t seq, vosd_frame *f) {
    const uint8_t *slot = r->base + r->slots_offset + ((seq - 1) % r->slot_count) * r->slot_stride;
    uint64_t s1, s2;
    uint32_t raw_count, count, i;
    vosd_slot_header sh;

    s1 = vosd__load64(slot);
    atomic_thread_fence(memory_order_acquire);
    if (s1 != 2 * seq) return 0;
    memcpy(&sh, slot, sizeof sh);
    raw_count = sh.object_count;
    count = raw_count < r->max_objects ? raw_count : r->max_objects;
    for (i = 0; i < count; i++)
        memcpy(&f->objects[i], slot + r->objects_offset + (size_t)i * r->object_stride, sizeof(vosd_object));
    memcpy(f->mask, slot + r->mask_offset, (size_t)r->mask_len);
    atomic_thread_fence(memory_order_acquire);
    s2 = vosd__load64(slot);
    if (s2 != s1) {
        r->torn_retries++;
        return 0;
    }
    if (raw_count > r->max_objects)
        return vosd__fail(r, VOSD_ERR_CORRUPT, "slot of publish %llu is corrupt: object_count exceeds max_objects",
                          (unsigned long long)seq);
    f->seq = seq;
    f->frame_number = sh.frame_number;
    f->capture_ns = sh.capture_ns;
    f->publish_ns = sh.publish_ns;
    f->object_count = count;
    f->width = r->width;
    f->height = r->height;
    return 1;
}

static inline int vosd__read(vosd_reader *r, vosd_frame *f, int latest_only) {
    unsigned attempt;
    int missed = 0; /* after a missed copy, take the newest frame: the oldest
                       slot is the next one the writer overwrites */
    for (attempt = 0; attempt < 10000u; attempt++) {
        uint32_t state = vosd_writer_state(r); /* state before latest */
        uint64_t latest = vosd_latest_seq(r);
        uint64_t want, oldest;
        int rc;
        if (latest == 0 || latest <= r->last_seq)
            return state == VOSD_STATE_ENDED ? VOSD_ENDED : VOSD_EMPTY;
        if (latest_only || missed) {
            want = latest;
        } else {
            oldest = latest > (uint64_t)r->slot_count - 1 ? latest - (r->slot_count - 1) : 1;
            want = r->last_seq + 1 > oldest ? r->last_seq + 1 : oldest;
        }
        rc = vosd__try_copy(r, want, f);
        if (rc == 1) {
            f->skipped = want - r->last_seq - 1;
            r->last_seq = want;
            return VOSD_FRAME;
        }
        if (rc < 0) {
            r->last_seq = want;
            return rc;
        }
        missed = 1;
        if (attempt >= 16) sched_yield();
    }
    return vosd__fail(r, VOSD_ERR_STARVED, "no consistent copy after 10000 attempts (writer laps the reader)");
}

/**
 * Copies the frame after the last one read (publish order). If the writer
 * lapped the reader, jumps to the oldest frame still in the ring (or, if
 * that one is overwritten while being copied, to the newest) and sets
 * f->skipped. A new reader starts with the newest frame at the time it
 * opened (or the first frame, if it opened before any was published).
 * Returns VOSD_FRAME, VOSD_EMPTY, VOSD_ENDED or a negative VOSD_ERR_*.
 */
static inline int vosd_read_next(vosd_reader *r, vosd_frame *f) { return vosd__read(r, f, 0); }

/** Copies the newest frame (skipping older ones); return codes as vosd_read_next. */
static inline int vosd_read_latest(vosd_reader *r, vosd_frame *f) { return vosd__read(r, f, 1); }

#ifdef __cplusplus
}
#endif

#endif /* VOSD_SHM_H */
