//! The Zenoh path allocates nothing per frame in vosd's own code: the
//! three messages are written into buffers reused from frame to frame
//! (and the clock conversion, header and attachment allocate nothing),
//! counted by a global allocator in a test binary of its own. With the
//! `zenoh` feature it also reports what zenoh's own `put` allocates per
//! frame (zenoh copies the payload into its buffers; not vosd's code).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, counting_this_thread, take_count};
use vosd::zenoh::clock::WallClock;
use vosd::zenoh::graph;
use vosd::zenoh::messages::{self, Header};
use vosd_shm::{BBox, ObjectState, Visibility};

const W: usize = 640;
const H: usize = 480;

fn objects(k: u32) -> Vec<ObjectState> {
    (1..=8)
        .map(|id| ObjectState {
            id: id * 31 + k,
            visibility: Visibility::Visible,
            area: 1000 + k,
            bbox: BBox {
                x0: id,
                y0: 2 * id,
                x1: 100 + id + k,
                y1: 50 + id,
            },
            centroid: [1.5, 2.5],
            velocity: [k as f32, -1.0],
            confidence: 0.5,
        })
        .collect()
}

/// One test, in order: the counter is global, and zenoh's runtime threads
/// (which live on after a session closes) would be counted in the encoding
/// check if it ran after or beside the zenoh part.
#[test]
fn zenoh_path_allocations() {
    encoding_frames_does_not_allocate();
    #[cfg(feature = "zenoh")]
    zenoh_put_allocations_per_frame();
}

fn encoding_frames_does_not_allocate() {
    assert_counter_works();
    let frame_id = "camera_optical_frame";
    let mut bufs = [
        Vec::with_capacity(messages::image_capacity(W, H, frame_id.len())),
        Vec::with_capacity(messages::detections_capacity(8, frame_id.len())),
        Vec::with_capacity(messages::states_capacity(8, frame_id.len())),
    ];
    let mask: Vec<u8> = (0..W * H).map(|i| (i % 7) as u8).collect();
    let frames: Vec<Vec<ObjectState>> = (0..4).map(objects).collect();
    let mut clock = WallClock::new(0.1);
    let gid = graph::gid("token");
    let mut att = [0u8; graph::ATTACHMENT_LEN];
    // This thread only: the encoding runs here, and the test harness's
    // main thread may allocate meanwhile (4 allocations were counted once).
    take_count();
    counting_this_thread(true);
    for k in 0..200u64 {
        let states = &frames[(k % 4) as usize];
        let header = Header::from_ns(clock.to_realtime(k * 33_000_000), frame_id);
        let [m, d, s] = &mut bufs;
        messages::image(m, &header, &mask, W, H, 1 + (k % 3) as usize);
        messages::detections(d, &header, states);
        messages::states(s, &header, states);
        graph::attachment(&mut att, k as i64, header.ns(), &gid);
        std::hint::black_box((&bufs, &att));
    }
    counting_this_thread(false);
    assert_eq!(take_count(), 0, "vosd's encoding allocated");
    // The last frame (k = 199) was downscaled by 2; the 20-byte frame_id
    // puts the pixels at offset 64.
    assert_eq!(bufs[0].len(), 4 + 64 + (W / 2) * (H / 2));
}

/// What zenoh itself allocates to put one frame (three messages with
/// attachments) on a session without peers: reported, not vosd's code.
#[cfg(feature = "zenoh")]
fn zenoh_put_allocations_per_frame() {
    use zenoh::bytes::ZBytes;
    use zenoh::Wait;
    let mut cfg = zenoh::Config::default();
    cfg.insert_json5("mode", "\"peer\"").unwrap();
    cfg.insert_json5("listen/endpoints", "[]").unwrap();
    cfg.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    let session = zenoh::open(cfg).wait().unwrap();
    let publisher = session.declare_publisher("0/alloc/test").wait().unwrap();
    let payload = vec![7u8; W * H + 64];
    let att = [1u8; graph::ATTACHMENT_LEN];
    let put = || {
        for _ in 0..3 {
            publisher
                .put(ZBytes::from(payload.as_slice()))
                .attachment(ZBytes::from(att))
                .wait()
                .unwrap();
        }
    };
    for _ in 0..20 {
        put();
    }
    let n = 100;
    take_count();
    counting_alloc::counting(true);
    for _ in 0..n {
        put();
    }
    counting_alloc::counting(false);
    let per_frame = take_count() as f64 / n as f64;
    eprintln!("zenoh put of one frame's three messages: {per_frame:.1} allocations (zenoh's own, all threads)");
    // Copying the payload into zenoh's buffer is at least one allocation a
    // message; the count is not vosd's to bound.
    assert!(per_frame >= 3.0, "{per_frame}");
    session.close().wait().unwrap();
}
