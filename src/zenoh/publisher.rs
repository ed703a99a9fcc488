//! The Zenoh publisher: a [`FrameTap`] whose own thread publishes each
//! frame as three ROS 2 topics in rmw_zenoh's wire format.
//!
//! The publish stage offers each frame ([`ZenohTap::offer`]): the mask and
//! states are copied into a buffer of a small pool (allocated at start) and
//! handed over a one-item latest-wins queue; when the pool is empty or a
//! queued frame is replaced, the frame is counted in
//! [`Stats::dropped_tap`](crate::pipeline::Stats::dropped_tap). Nothing
//! waits on the network there.
//!
//! The thread opens the session (retrying every 5 s while it fails: a
//! client whose router is unreachable), declares the node's and the
//! publishers' liveliness tokens, and for each frame converts the capture
//! time to the ROS clock ([`WallClock`]), writes the three messages into
//! buffers reused from frame to frame and puts them with their attachment.
//! Frames that arrive while there is no session are counted as dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use zenoh::bytes::ZBytes;
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::Publisher;
use zenoh::qos::{CongestionControl, Reliability};
use zenoh::query::Queryable;
use zenoh::{Session, Wait};

use vosd_shm::ObjectState;

use super::clock::WallClock;
use super::config::{ZenohConfig, ZenohMode};
use super::graph::{self, Node, Topic};
use super::messages::{self, Header};
use super::timing::Timings;
use super::type_hash::{self, TYPES};
use crate::pipeline::{latest, FrameTap, LatestSender, Pool, Recycler, Stats, TapFrame};

/// Frames in the publisher's pool: one being copied, one queued, one being
/// sent.
const POOL: usize = 3;

/// How long the thread waits on its queue before it looks again.
const TICK: Duration = Duration::from_millis(50);

/// Seconds between attempts to open a session that failed.
const RETRY: Duration = Duration::from_secs(5);

/// After this long, say whether a router or peer was reached.
const CHECK_CONNECTED: Duration = Duration::from_secs(3);

/// A frame copied for the publisher thread.
struct ZFrame {
    capture_ns: u64,
    width: usize,
    height: usize,
    mask: Vec<u8>,
    objects: Vec<ObjectState>,
}

/// The three topics: relative name and type.
const TOPICS: [(&str, &str); 3] = [
    ("mask", type_hash::IMAGE),
    ("detections", type_hash::DETECTION2D_ARRAY),
    ("states", type_hash::OBJECT_STATE_ARRAY),
];

/// Why the Zenoh publisher cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ZenohError {
    /// The `[zenoh]` table is unusable.
    #[error("{0}")]
    Config(String),
    /// A type hash cannot be computed.
    #[error(transparent)]
    TypeHash(#[from] type_hash::UnknownType),
    /// The thread cannot start.
    #[error("cannot start the zenoh thread: {0}")]
    Thread(std::io::Error),
}

/// Everything the publisher thread needs, built before the pipeline
/// starts (so that configuration errors stop `vosd run` at once).
struct Setup {
    cfg: ZenohConfig,
    zconfig: zenoh::Config,
    topics: Vec<Topic>,
    width: usize,
    height: usize,
    max_objects: usize,
}

/// The Zenoh publisher (see the module documentation).
pub struct ZenohTap {
    setup: Option<Setup>,
    pool: Pool<ZFrame>,
    recycler: Recycler<ZFrame>,
    queue: Option<(LatestSender<ZFrame>, Receiver<ZFrame>)>,
    tx: Option<LatestSender<ZFrame>>,
    stats: Option<Arc<Stats>>,
    thread: Option<JoinHandle<()>>,
    /// What [`offer`](FrameTap::offer) costs the publish stage.
    offer_ns: Timings,
}

/// The Zenoh session configuration of `cfg`: its mode and endpoints,
/// multicast scouting off (as rmw_zenoh), gossip scouting on.
pub fn session_config(cfg: &ZenohConfig) -> Result<zenoh::Config, ZenohError> {
    let mut z = zenoh::Config::default();
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let mode = match cfg.mode {
        ZenohMode::Peer => "\"peer\"",
        ZenohMode::Client => "\"client\"",
    };
    let set = |z: &mut zenoh::Config, key: &str, value: &str, what: &str| {
        z.insert_json5(key, value)
            .map_err(|e| ZenohError::Config(format!("zenoh.{what}: {value}: {e}")))
    };
    set(&mut z, "mode", mode, "mode")?;
    set(&mut z, "connect/endpoints", &json(&cfg.connect), "connect")?;
    set(&mut z, "listen/endpoints", &json(&cfg.listen), "listen")?;
    set(&mut z, "scouting/multicast/enabled", "false", "mode")?;
    Ok(z)
}

impl ZenohTap {
    /// Prepares the publisher for `width`×`height` masks and up to
    /// `max_objects` objects: checks the table, computes the type hashes,
    /// builds the session configuration and allocates the frame pool. The
    /// thread starts with the pipeline ([`FrameTap::attach`]).
    pub fn new(
        cfg: &ZenohConfig,
        width: usize,
        height: usize,
        max_objects: usize,
    ) -> Result<Self, ZenohError> {
        cfg.validate()
            .map_err(|e| ZenohError::Config(e.to_string()))?;
        let zconfig = session_config(cfg)?;
        let node = node_of(cfg, String::new());
        let topics = TOPICS
            .iter()
            .enumerate()
            .map(|(i, (rel, ty))| {
                Ok(Topic {
                    name: node.private_topic(rel),
                    ros_type: (*ty).to_string(),
                    type_hash: type_hash::rihs01(ty, TYPES)?,
                    entity_id: i as u32 + 1,
                })
            })
            .collect::<Result<Vec<_>, ZenohError>>()?;
        let pool = Pool::new(POOL, || ZFrame {
            capture_ns: 0,
            width,
            height,
            mask: Vec::with_capacity(width * height),
            objects: Vec::with_capacity(max_objects),
        });
        let recycler = pool.recycler();
        let (tx, rx) = latest::<ZFrame>();
        Ok(Self {
            setup: Some(Setup {
                cfg: cfg.clone(),
                zconfig,
                topics,
                width,
                height,
                max_objects,
            }),
            pool,
            recycler,
            queue: Some((tx, rx)),
            tx: None,
            stats: None,
            thread: None,
            offer_ns: Timings::new(4096),
        })
    }

    /// The fully qualified topic names and key expressions this publisher
    /// will use (for the start-up log).
    pub fn describe(&self) -> Vec<String> {
        self.setup
            .as_ref()
            .map(|s| {
                let node = node_of(&s.cfg, "*".into());
                s.topics
                    .iter()
                    .map(|t| format!("{} on {}", t.name, node.topic_keyexpr(t)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn count_drop(&self) {
        if let Some(s) = &self.stats {
            s.dropped_tap.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The ROS node of `cfg` on session `session_id`.
fn node_of(cfg: &ZenohConfig, session_id: String) -> Node {
    Node {
        domain_id: cfg.domain_id,
        namespace: cfg.namespace.clone(),
        name: cfg.node.clone(),
        session_id,
    }
}

impl FrameTap for ZenohTap {
    fn attach(&mut self, stats: Arc<Stats>) {
        self.stats = Some(stats.clone());
        let (Some(setup), Some((tx, rx))) = (self.setup.take(), self.queue.take()) else {
            return;
        };
        let recycler = self.recycler.clone();
        let spawned = std::thread::Builder::new()
            .name("vosd-zenoh".into())
            .spawn(move || publisher_thread(setup, rx, recycler, stats));
        match spawned {
            Ok(t) => {
                self.thread = Some(t);
                self.tx = Some(tx);
            }
            Err(e) => log::error!(
                "zenoh: {}; frames go to shared memory only",
                ZenohError::Thread(e)
            ),
        }
    }

    fn offer(&mut self, frame: &TapFrame<'_>) {
        let t0 = vosd_shm::monotonic_ns();
        self.hand_over(frame);
        self.offer_ns
            .push(vosd_shm::monotonic_ns().saturating_sub(t0));
    }
}

impl ZenohTap {
    /// Copies `frame` into a pooled buffer and queues it (see
    /// [`FrameTap::offer`]).
    fn hand_over(&mut self, frame: &TapFrame<'_>) {
        let Some(tx) = &self.tx else {
            return self.count_drop();
        };
        let Ok(mut f) = self.pool.take(Duration::ZERO) else {
            return self.count_drop();
        };
        f.capture_ns = frame.capture_ns;
        f.width = frame.width;
        f.height = frame.height;
        f.mask.clear();
        f.mask.extend_from_slice(frame.mask);
        f.objects.clear();
        let room = f.objects.capacity();
        f.objects
            .extend_from_slice(&frame.objects[..frame.objects.len().min(room)]);
        let recycler = &self.recycler;
        match tx.send(f, |stale| recycler.give_back(stale)) {
            Ok(false) => {}
            Ok(true) => self.count_drop(),
            Err(_) => {
                // The thread has gone (it logged why).
                self.tx = None;
                self.count_drop();
            }
        }
    }
}

impl Drop for ZenohTap {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which undeclares its tokens.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some((n, p50, p99)) = self.offer_ns.summary() {
            log::info!(
                "zenoh: handing a frame to the publisher thread cost the publish stage p50 {p50:.1} µs, p99 {p99:.1} µs ({n} frames)"
            );
        }
    }
}

/// An open session with its tokens and publishers.
struct Live {
    session: Session,
    tokens: Vec<LivelinessToken>,
    publishers: Vec<(Publisher<'static>, [u8; 16], i64)>,
    /// With `ros2dds_keys`: a publisher per topic on the bridge's key.
    bridged: Vec<Publisher<'static>>,
    /// Answers `<domain>/<namespace>/<node>/status` with the statistics.
    _status: Queryable<()>,
    opened: Instant,
    checked: bool,
}

/// The key of the status queryable: `<domain>/<namespace>/<node>/status`
/// (no type or hash: not a ROS topic key).
pub fn status_keyexpr(cfg: &ZenohConfig) -> String {
    let node = node_of(cfg, String::new());
    format!(
        "{}/{}",
        cfg.domain_id,
        node.private_topic("status").trim_matches('/')
    )
}

/// Opens the session and declares the node, its three publishers, their
/// liveliness tokens and the status queryable (the pipeline's statistics
/// as JSON, as the control socket's `status` reports them).
fn open(setup: &Setup, stats: &Arc<Stats>) -> Result<Live, zenoh::Error> {
    let session = zenoh::open(setup.zconfig.clone()).wait()?;
    let node = node_of(&setup.cfg, session.zid().to_string());
    let mut tokens = vec![session.liveliness().declare_token(node.token()).wait()?];
    let mut publishers = Vec::new();
    let mut bridged = Vec::new();
    for t in &setup.topics {
        if setup.cfg.ros2dds_keys {
            bridged.push(
                session
                    .declare_publisher(node.ros2dds_keyexpr(t))
                    .congestion_control(CongestionControl::Drop)
                    .reliability(Reliability::BestEffort)
                    .wait()?,
            );
        }
        let p = session
            .declare_publisher(node.topic_keyexpr(t))
            .congestion_control(CongestionControl::Drop)
            .reliability(Reliability::BestEffort)
            .wait()?;
        let token = node.publisher_token(t);
        publishers.push((p, graph::gid(&token), 1));
        tokens.push(session.liveliness().declare_token(token).wait()?);
    }
    let stats = stats.clone();
    let status = session
        .declare_queryable(status_keyexpr(&setup.cfg))
        .callback(move |query| {
            let body = serde_json::to_vec(&stats.snapshot()).unwrap_or_default();
            if let Err(e) = query.reply(query.key_expr().clone(), body).wait() {
                log::warn!("zenoh: status reply: {e}");
            }
        })
        .wait()?;
    log::info!(
        "zenoh: session {} ({:?} mode), node {} in namespace {} on domain {}",
        session.zid(),
        setup.cfg.mode,
        setup.cfg.node,
        setup.cfg.namespace,
        setup.cfg.domain_id
    );
    Ok(Live {
        session,
        tokens,
        publishers,
        bridged,
        _status: status,
        opened: Instant::now(),
        checked: false,
    })
}

impl Live {
    /// Logs once, a few seconds after opening, whether a router or peer
    /// was reached.
    fn check_connected(&mut self, cfg: &ZenohConfig) {
        if self.checked || self.opened.elapsed() < CHECK_CONNECTED {
            return;
        }
        self.checked = true;
        let routers = self.session.info().routers_zid().wait().count();
        let peers = self.session.info().peers_zid().wait().count();
        if routers + peers == 0 && !cfg.connect.is_empty() {
            log::warn!(
                "zenoh: no router or peer reached at {:?} after {} s (is rmw_zenohd running?); \
                 publishing goes on and subscribers can connect to {:?}; shared memory is unaffected",
                cfg.connect,
                CHECK_CONNECTED.as_secs(),
                cfg.listen
            );
        } else {
            log::info!("zenoh: connected to {routers} router(s) and {peers} peer(s)");
        }
    }

    /// Puts the three messages of one frame.
    fn publish(&mut self, bufs: &[Vec<u8>; 3]) -> Result<(), zenoh::Error> {
        let now = clock_realtime_ns();
        let mut att = [0u8; graph::ATTACHMENT_LEN];
        for ((p, gid, seq), buf) in self.publishers.iter_mut().zip(bufs) {
            graph::attachment(&mut att, *seq, now, gid);
            *seq += 1;
            p.put(ZBytes::from(buf.as_slice()))
                .attachment(ZBytes::from(att))
                .wait()?;
        }
        for (p, buf) in self.bridged.iter().zip(bufs) {
            p.put(ZBytes::from(buf.as_slice())).wait()?;
        }
        Ok(())
    }

    /// Undeclares the tokens and closes the session.
    fn close(self) {
        for t in self.tokens {
            let _ = t.undeclare().wait();
        }
        drop(self.publishers);
        drop(self.bridged);
        if let Err(e) = self.session.close().wait() {
            log::warn!("zenoh: closing the session: {e}");
        }
    }
}

/// CLOCK_REALTIME now, ns (the attachment's source timestamp).
fn clock_realtime_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (ts.tv_sec as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as i64)
}

/// Writes the three messages of a frame into `bufs`.
fn encode(
    bufs: &mut [Vec<u8>; 3],
    mask_data: &[u8],
    width: usize,
    height: usize,
    objects: &[ObjectState],
    header: &Header,
    downscale: usize,
) {
    let [mask, det, st] = bufs;
    messages::image(mask, header, mask_data, width, height, downscale);
    messages::detections(det, header, objects);
    messages::states(st, header, objects);
}

/// The publisher thread (see the module documentation).
fn publisher_thread(
    setup: Setup,
    rx: Receiver<ZFrame>,
    recycler: Recycler<ZFrame>,
    stats: Arc<Stats>,
) {
    let cfg = &setup.cfg;
    let mut clock = WallClock::new(cfg.clock_refresh_s);
    log::info!(
        "zenoh: clock offset measured within ±{} ns (refreshed every {} s)",
        clock.bracket_ns() / 2 + 1,
        cfg.clock_refresh_s
    );
    let fid = cfg.frame_id.len();
    let mut bufs = [
        Vec::with_capacity(messages::image_capacity(setup.width, setup.height, fid)),
        Vec::with_capacity(messages::detections_capacity(setup.max_objects, fid)),
        Vec::with_capacity(messages::states_capacity(setup.max_objects, fid)),
    ];
    let mut encode_ns = Timings::new(4096);
    let mut put_ns = Timings::new(4096);
    let mut live: Option<Live> = None;
    let mut next_try = Instant::now();
    let mut failures = 0u32;
    loop {
        if live.is_none() && Instant::now() >= next_try {
            match open(&setup, &stats) {
                Ok(l) => {
                    if failures > 0 {
                        log::info!("zenoh: session open after {failures} failed attempt(s)");
                    }
                    live = Some(l);
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        log::error!(
                            "zenoh: cannot open the session ({:?} mode, connect {:?}): {e}; \
                             retrying every {} s; frames go to shared memory meanwhile",
                            cfg.mode,
                            cfg.connect,
                            RETRY.as_secs()
                        );
                    }
                    next_try = Instant::now() + RETRY;
                }
            }
        }
        let f = match rx.recv_timeout(TICK) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match &mut live {
            Some(l) => {
                l.check_connected(cfg);
                let t0 = vosd_shm::monotonic_ns();
                let header = Header::from_ns(clock.to_realtime(f.capture_ns), &cfg.frame_id);
                encode(
                    &mut bufs,
                    &f.mask,
                    f.width,
                    f.height,
                    &f.objects,
                    &header,
                    cfg.mask_downscale as usize,
                );
                let t1 = vosd_shm::monotonic_ns();
                if let Err(e) = l.publish(&bufs) {
                    log::warn!("zenoh: put failed: {e}");
                    stats.dropped_tap.fetch_add(1, Ordering::Relaxed);
                }
                encode_ns.push(t1.saturating_sub(t0));
                put_ns.push(vosd_shm::monotonic_ns().saturating_sub(t1));
            }
            None => {
                stats.dropped_tap.fetch_add(1, Ordering::Relaxed);
            }
        }
        recycler.give_back(f);
    }
    if let Some(l) = live {
        l.close();
    }
    for (what, t) in [("encoding", &encode_ns), ("putting", &put_ns)] {
        if let Some((n, p50, p99)) = t.summary() {
            log::info!(
                "zenoh: {what} a frame's three messages took p50 {p50:.1} µs, p99 {p99:.1} µs ({n} frames)"
            );
        }
    }
}
