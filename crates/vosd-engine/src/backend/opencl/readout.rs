//! The memory readout on an OpenCL device.
//!
//! The memory's keys and values live in device buffers with one region per
//! memory slot. A slot is uploaded only when its content changed (its
//! [`MemoryStore::slot_version`]), so a frame costs the query upload, one
//! kernel and the download of the values and confidences; a new memory
//! frame adds one slot upload.

use std::sync::Arc;

use ocl::enums::{KernelWorkGroupInfo, KernelWorkGroupInfoResult};
use ocl::{Buffer, Kernel, MemFlags, SpatialDims};

use super::{device_err, Gpu, OpenclError};
use crate::backend::{BackendError, ReadoutBackend};
use crate::memory::MemoryStore;
use crate::readout::{GridSize, ReadoutParams, MAX_FRAMES};

/// Readout buffers and kernel for one tracker's memory.
pub struct OpenclReadout {
    gpu: Arc<Gpu>,
    grid: GridSize,
    dim: usize,
    channels: usize,
    query: Buffer<f32>,
    keys: Buffer<f32>,
    values: Buffer<f32>,
    frame_slots: Buffer<i32>,
    frame_radius: Buffer<i32>,
    out: Buffer<f32>,
    confidence: Buffer<f32>,
    kernel: Kernel,
    /// Version of each slot as uploaded (0 = never).
    uploaded: Vec<u64>,
    slots_host: Vec<i32>,
    radius_host: Vec<i32>,
    /// Whether the kernel has run once (see `Gpu::wait`).
    warmed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for OpenclReadout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OpenclReadout({}x{} on {})",
            self.grid.width, self.grid.height, self.gpu.summary.name
        )
    }
}

impl OpenclReadout {
    /// Device buffers for `memory`'s geometry on a `grid`.
    pub fn new(gpu: Arc<Gpu>, grid: GridSize, memory: &MemoryStore) -> Result<Self, OpenclError> {
        let setup = |e: ocl::Error| OpenclError::Setup(e.to_string());
        let cells = grid.width * grid.height;
        let (dim, channels, slots) = (memory.dim(), memory.channels(), memory.slot_count());
        let buf = |len: usize, read_only: bool| {
            let flags = if read_only {
                MemFlags::new().read_only()
            } else {
                MemFlags::new().read_write()
            };
            Buffer::<f32>::builder()
                .queue(gpu.queue().clone())
                .flags(flags)
                .len(len.max(1))
                .build()
                .map_err(setup)
        };
        let ints = || {
            Buffer::<i32>::builder()
                .queue(gpu.queue().clone())
                .flags(MemFlags::new().read_only())
                .len(MAX_FRAMES)
                .build()
                .map_err(setup)
        };
        let query = buf(cells * dim, true)?;
        let keys = buf(slots * cells * dim, true)?;
        let values = buf(slots * cells * channels, true)?;
        let out = buf(cells * channels, false)?;
        let confidence = buf(cells, false)?;
        let (frame_slots, frame_radius) = (ints()?, ints()?);
        // Keys per local-memory tile: half the local memory at most (some
        // drivers reserve part of it), 64 keys at most.
        let tile_keys =
            ((gpu.summary.local_memory_bytes as usize / 2) / (4 * dim.max(1))).clamp(1, 64);
        let build = |side: usize| {
            let round = |n: usize| n.div_ceil(side) * side;
            Kernel::builder()
                .program(&gpu.readout_program)
                .queue(gpu.queue().clone())
                .name("readout")
                .global_work_size(SpatialDims::Two(round(grid.width), round(grid.height)))
                .local_work_size(SpatialDims::Two(side, side))
                .arg(&query)
                .arg(&keys)
                .arg(&values)
                .arg(&frame_slots)
                .arg(&frame_radius)
                .arg(0i32)
                .arg(grid.width as i32)
                .arg(grid.height as i32)
                .arg(dim as i32)
                .arg(channels as i32)
                .arg(1i32)
                .arg(1.0f32)
                .arg(&out)
                .arg(&confidence)
                .arg_local::<f32>(tile_keys * dim.max(1))
                .arg(tile_keys as i32)
                .build()
                .map_err(setup)
        };
        // 8×8 work-groups where the kernel allows them (its private arrays
        // can lower the limit), else smaller squares.
        let mut kernel = build(8)?;
        let limit = match kernel.wg_info(gpu.device(), KernelWorkGroupInfo::WorkGroupSize) {
            Ok(KernelWorkGroupInfoResult::WorkGroupSize(n)) => n,
            _ => 1,
        };
        if limit < 64 {
            let side = if limit >= 16 {
                4
            } else if limit >= 4 {
                2
            } else {
                1
            };
            kernel = build(side)?;
        }
        Ok(Self {
            gpu,
            grid,
            dim,
            channels,
            query,
            keys,
            values,
            frame_slots,
            frame_radius,
            out,
            confidence,
            kernel,
            uploaded: vec![0; slots],
            slots_host: Vec::with_capacity(MAX_FRAMES),
            radius_host: Vec::with_capacity(MAX_FRAMES),
            warmed: Default::default(),
        })
    }

    /// Same contract as [`crate::readout::readout`]: `out` receives
    /// `cells * channels` values, `confidence` the best affinity per cell.
    /// `memory` may have fewer slots than the memory this readout was made
    /// for (the self-test's); slot versions are unique in the process, so
    /// the slots of another store are always uploaded afresh.
    pub fn readout(
        &mut self,
        query: &[f32],
        memory: &MemoryStore,
        params: &ReadoutParams,
        out: &mut [f32],
        confidence: &mut [f32],
    ) -> Result<(), OpenclError> {
        let cells = self.grid.width * self.grid.height;
        if memory.dim() != self.dim
            || memory.channels() != self.channels
            || memory.cells() != cells
            || memory.slot_count() > self.uploaded.len()
            || query.len() != cells * self.dim
            || out.len() != cells * self.channels
            || confidence.len() != cells
        {
            return Err(OpenclError::Device(
                "readout buffers do not fit the memory".into(),
            ));
        }
        let (kd, vd) = (cells * self.dim, cells * self.channels);
        self.slots_host.clear();
        self.radius_host.clear();
        for frame in memory.frames().take(MAX_FRAMES) {
            let slot = frame.slot;
            let version = memory.slot_version(slot);
            if self.uploaded[slot] != version {
                self.keys
                    .write(frame.keys)
                    .offset(slot * kd)
                    .enq()
                    .map_err(device_err)?;
                self.values
                    .write(frame.values)
                    .offset(slot * vd)
                    .enq()
                    .map_err(device_err)?;
                self.uploaded[slot] = version;
            }
            self.slots_host.push(slot as i32);
            let r = if frame.is_first {
                params.first_frame_radius
            } else {
                params.window_radius
            };
            // A radius past the grid means the whole grid (as on the CPU);
            // clamping keeps it in range of the kernel's int.
            self.radius_host
                .push(r.min(self.grid.width.max(self.grid.height)) as i32);
        }
        let frames = self.slots_host.len();
        if frames > 0 {
            self.frame_slots
                .write(&self.slots_host[..])
                .len(frames)
                .enq()
                .map_err(device_err)?;
            self.frame_radius
                .write(&self.radius_host[..])
                .len(frames)
                .enq()
                .map_err(device_err)?;
        }
        self.query.write(query).enq().map_err(device_err)?;
        self.kernel.set_arg(5, frames as i32).map_err(device_err)?;
        self.kernel
            .set_arg(10, params.top_k as i32)
            .map_err(device_err)?;
        self.kernel
            .set_arg(11, params.temperature)
            .map_err(device_err)?;
        // SAFETY: the buffers were sized for this grid and memory (checked
        // above); the kernel reads `frames` entries of the slot lists.
        unsafe { self.kernel.enq().map_err(device_err)? };
        self.gpu.wait(&self.warmed)?;
        self.out.read(out).enq().map_err(device_err)?;
        self.confidence.read(confidence).enq().map_err(device_err)?;
        Ok(())
    }
}

impl ReadoutBackend for OpenclReadout {
    fn readout(
        &mut self,
        query: &[f32],
        memory: &MemoryStore,
        params: &ReadoutParams,
        out: &mut [f32],
        confidence: &mut [f32],
    ) -> Result<(), BackendError> {
        Ok(OpenclReadout::readout(
            self, query, memory, params, out, confidence,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::reference::test_gpu;
    use super::*;
    use crate::backend::compare::OutputError;
    use crate::backend::cpu::CpuReadout;
    use crate::backend::self_test::{ReadoutProbe, READOUT_SELF_TEST};
    use crate::backend::Device;
    use crate::readout::{random_unit_keys, readout, ReadoutScratch};

    #[test]
    fn device_readout_matches_cpu_readout() {
        // Key dims off the kernel's float4 path (37) and on it (40, and the
        // engine's 152).
        for dim in [37, 40, 152] {
            readout_matches(dim);
        }
    }

    fn readout_matches(dim: usize) {
        let Some(gpu) = test_gpu() else { return };
        // Odd grid (work-groups overhang it), 3 objects.
        let grid = GridSize {
            width: 13,
            height: 9,
        };
        let (cells, ch) = (13 * 9, 4);
        let mut rng = 7u64;
        let mut memory = MemoryStore::new(cells, dim, ch, 3);
        let values = |rng: &mut u64| {
            random_unit_keys(rng, cells, ch)
                .iter()
                .map(|v| v.abs())
                .collect::<Vec<_>>()
        };
        let (k, v) = (random_unit_keys(&mut rng, cells, dim), values(&mut rng));
        memory.set_first(0, &k, &v);
        let mut dev = OpenclReadout::new(gpu.clone(), grid, &memory).unwrap();
        // The self-test passes and leaves nothing of its own memory behind
        // (stale data of its slots would fail the comparisons below).
        let p0 = ReadoutParams {
            top_k: 5,
            temperature: 0.1,
            window_radius: 0,
            first_frame_radius: 0,
        };
        let probe = ReadoutProbe::new(grid, &memory, &p0);
        let device: Device = gpu;
        READOUT_SELF_TEST
            .check(
                &device,
                &mut CpuReadout::new(grid, 1) as &mut dyn ReadoutBackend,
                &mut dev as &mut dyn ReadoutBackend,
                |r| probe.run(r),
            )
            .unwrap();
        let params = [
            ReadoutParams {
                top_k: 5,
                temperature: 0.1,
                window_radius: 2,
                first_frame_radius: 0,
            },
            ReadoutParams {
                top_k: 64,
                temperature: 0.05,
                window_radius: 0,
                first_frame_radius: 3,
            },
            ReadoutParams {
                top_k: 1,
                temperature: 1.0,
                window_radius: 1,
                first_frame_radius: 1,
            },
        ];
        // Memory grows past its capacity (slots are overwritten and must be
        // re-uploaded), and an object channel is edited in place.
        for step in 0..6 {
            if step > 0 {
                let (k, v) = (random_unit_keys(&mut rng, cells, dim), values(&mut rng));
                memory.push_working(step, &k, &v);
            }
            if step == 4 {
                memory
                    .values_mut()
                    .iter_mut()
                    .skip(2)
                    .step_by(ch)
                    .for_each(|x| *x = 0.0);
            }
            let query = random_unit_keys(&mut rng, cells, dim);
            for p in &params {
                let (mut a, mut ca) = (vec![0.0; cells * ch], vec![0.0; cells]);
                let (mut b, mut cb) = (vec![0.0; cells * ch], vec![0.0; cells]);
                let mut scratch = ReadoutScratch::new(grid, 2);
                readout(&query, grid, &memory, p, &mut scratch, &mut a, &mut ca);
                dev.readout(&query, &memory, p, &mut b, &mut cb).unwrap();
                let err = OutputError::between(&b, &a).max_abs;
                let cerr = OutputError::between(&cb, &ca).max_abs;
                assert!(
                    err < 1e-4 && cerr < 1e-5,
                    "dim {dim} step {step} {p:?}: values {err}, confidence {cerr}"
                );
            }
        }
    }

    #[test]
    fn empty_memory_and_wrong_sizes() {
        let Some(gpu) = test_gpu() else { return };
        let grid = GridSize {
            width: 4,
            height: 3,
        };
        let memory = MemoryStore::new(12, 8, 2, 2);
        let mut dev = OpenclReadout::new(gpu, grid, &memory).unwrap();
        let p = ReadoutParams {
            top_k: 3,
            temperature: 0.1,
            window_radius: 0,
            first_frame_radius: 0,
        };
        let (mut out, mut conf) = (vec![9.0; 24], vec![9.0; 12]);
        dev.readout(&[0.5; 96], &memory, &p, &mut out, &mut conf)
            .unwrap();
        assert!(
            out.iter().chain(&conf).all(|&v| v == 0.0),
            "empty memory gives zeros"
        );
        let e = dev
            .readout(&[0.5; 95], &memory, &p, &mut out, &mut conf)
            .unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
    }
}
