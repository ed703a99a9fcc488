/*
 * example.c — print one line per frame published by a vosd pipeline.
 *
 *     cc -std=c11 -O2 -Icrates/vosd-shm/clients/c crates/vosd-shm/clients/c/example.c -o vosd-example   (add -lrt on old glibc)
 *     ./vosd-example /vosd-cam0 [frames] [timeout_s]
 *
 * Reads frames in order (vosd_read_next) until `frames` were printed
 * (default 100; 0 = until the writer ends), the writer ends, or no frame
 * arrives for `timeout_s` seconds (default 10). Each line:
 *
 *   frame=F seq=S skipped=K latency_ms=L objects=N nonzero=Z | id=I area=A bbox=[x0,y0,x1,y1) vis=V | ...
 *
 * latency_ms is publish minus capture time; nonzero counts labelled pixels.
 * The last line has the writer's pipeline statistics (ABI >= 2 segments):
 *
 *   stats captured=C dropped=D capture_errors=E reconnects=R source=ok|lost
 */
#define _POSIX_C_SOURCE 200809L
#include "vosd_shm.h"

#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void nap_us(long us) {
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    vosd_reader r;
    vosd_frame f;
    const char *name;
    unsigned long frames, printed = 0;
    double timeout, deadline;
    int rc;

    if (argc < 2) {
        fprintf(stderr, "usage: %s /shm-name [frames] [timeout_s]\n", argv[0]);
        return 2;
    }
    name = argv[1];
    frames = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
    timeout = argc > 3 ? strtod(argv[3], NULL) : 10.0;

    /* The writer may still be starting: retry "not found" / "not ready". */
    deadline = now_s() + timeout;
    for (;;) {
        rc = vosd_open(&r, name);
        if (rc == VOSD_OK) break;
        if ((rc != VOSD_ERR_NOT_FOUND && rc != VOSD_ERR_NOT_READY) || now_s() > deadline) {
            fprintf(stderr, "%s\n", r.error);
            return 1;
        }
        nap_us(10000);
    }
    if (vosd_frame_init(&f, &r) != VOSD_OK) {
        fprintf(stderr, "out of memory\n");
        vosd_close(&r);
        return 1;
    }
    fprintf(stderr, "opened %s: %ux%u mask, %u slots, %u objects max, ABI %u, writer pid %u\n", name, r.width,
            r.height, r.slot_count, r.max_objects, r.abi_version, r.writer_pid);

    deadline = now_s() + timeout;
    while (frames == 0 || printed < frames) {
        rc = vosd_read_next(&r, &f);
        if (rc == VOSD_FRAME) {
            size_t nonzero = 0, i;
            uint32_t k;
            for (i = 0; i < (size_t)r.mask_len; i++) nonzero += f.mask[i] != 0;
            printf("frame=%llu seq=%llu skipped=%llu latency_ms=%.3f objects=%u nonzero=%zu",
                   (unsigned long long)f.frame_number, (unsigned long long)f.seq, (unsigned long long)f.skipped,
                   (double)(f.publish_ns - f.capture_ns) / 1e6, f.object_count, nonzero);
            for (k = 0; k < f.object_count; k++) {
                const vosd_object *o = &f.objects[k];
                printf(" | id=%u area=%u bbox=[%u,%u,%u,%u) vis=%s", o->id, o->area, o->bbox[0], o->bbox[1],
                       o->bbox[2], o->bbox[3], vosd_visibility_name(o->visibility));
            }
            printf("\n");
            printed++;
            deadline = now_s() + timeout;
        } else if (rc == VOSD_EMPTY) {
            if (now_s() > deadline) {
                fprintf(stderr, "no frame for %.1f s\n", timeout);
                break;
            }
            nap_us(200);
        } else if (rc == VOSD_ENDED) {
            printf("end of stream\n");
            break;
        } else {
            fprintf(stderr, "%s\n", r.error);
            vosd_frame_free(&f);
            vosd_close(&r);
            return 1;
        }
    }
    {
        vosd_stats st;
        if (vosd_read_stats(&r, &st))
            printf("stats captured=%llu dropped=%llu capture_errors=%u reconnects=%u source=%s\n",
                   (unsigned long long)st.frames_captured, (unsigned long long)st.frames_dropped,
                   st.capture_errors, st.reconnects, st.source_state == VOSD_SOURCE_LOST ? "lost" : "ok");
        else
            printf("stats none (ABI %u segment)\n", r.abi_version);
    }
    fprintf(stderr, "%lu frames, %llu torn copies retried\n", printed, (unsigned long long)r.torn_retries);
    vosd_frame_free(&f);
    vosd_close(&r);
    return 0;
}
