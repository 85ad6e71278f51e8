//! The old table on the device: windows of whole rows, cached within a byte budget.
//!
//! An old table is cut into windows of `window_rows` rows (each at most one storage binding).
//! A window is uploaded when an output chunk first needs one of its rows, and stays resident
//! until the cache needs room: then the least recently used window that the current batch does
//! not need is evicted, and its buffer reused when it is large enough. A table that fits the
//! budget is therefore uploaded once, even when several jobs (the partitions of one variable)
//! read it; a larger one streams through the cache, which is cheap when the row map is roughly
//! monotonic (the usual vocabulary update) and costs re-uploads when it is not.
//!
//! A window the driver reads in the mapped checkpoint file (`host_memory.rs`) is *adopted*:
//! it takes no device memory, so it counts nothing against the budget, is never evicted to
//! make room, and its buffer, the file's own read-only pages, is never reused for another
//! window.
//!
//! Windows are identified by their tensor, the number of rows per window (jobs may lay out
//! the same table differently) and their index. Tensors are identified by the addresses of
//! their bytes (the memory-mapped file pieces); the cache holds a clone of each
//! [`TensorData`], which keeps the mapping, hence the addresses, alive.

use std::sync::Arc;

use super::device::Gpu;
use crate::checkpoint::TensorData;
use crate::error::Result;

/// Identity of an old tensor cut into windows: its dtype, shape, the address ranges of its
/// bytes, and the rows per window.
pub(crate) struct TensorKey {
    _data: TensorData,
    spans: Vec<(usize, usize)>,
    shape: Vec<usize>,
    dtype: safetensors::Dtype,
    window_rows: usize,
}

impl TensorKey {
    fn new(data: &TensorData, window_rows: usize) -> Self {
        TensorKey {
            window_rows,
            spans: data
                .pieces(0..data.byte_len())
                .map(|p| (p.as_ptr() as usize, p.len()))
                .collect(),
            shape: data.shape().to_vec(),
            dtype: data.dtype(),
            _data: data.clone(),
        }
    }

    fn same(&self, other: &TensorKey) -> bool {
        self.spans == other.spans
            && self.shape == other.shape
            && self.dtype == other.dtype
            && self.window_rows == other.window_rows
    }
}

struct Resident {
    tensor: Arc<TensorKey>,
    index: usize,
    buffer: wgpu::Buffer,
    last_used: u64,
    /// The file's own pages: free, and never written.
    adopted: bool,
}

/// The resident windows.
pub(crate) struct Windows {
    /// New window buffers are created mapped and written in place (a software adapter with
    /// `MAPPABLE_PRIMARY_BUFFERS`, where device memory is host memory).
    direct: bool,
    budget: u64,
    resident: Vec<Resident>,
    clock: u64,
    /// Fresh window buffers made ahead by [`Windows::make_ahead`], taken by `ensure`.
    spare: Vec<wgpu::Buffer>,
    /// Windows adopted so far.
    pub(crate) adopted: u64,
}

impl Windows {
    pub(crate) fn new(budget: u64, direct: bool) -> Self {
        Windows {
            direct,
            budget,
            resident: Vec::new(),
            clock: 0,
            spare: Vec::new(),
            adopted: 0,
        }
    }

    /// Bytes the cache may hold.
    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// Changes the bytes the cache may hold (windows beyond it are evicted as room is needed).
    pub(crate) fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// The key of `data` cut into windows of `window_rows` rows, shared with the resident
    /// windows of the same tensor and layout.
    pub(crate) fn key(&self, data: &TensorData, window_rows: usize) -> Arc<TensorKey> {
        let key = TensorKey::new(data, window_rows);
        self.resident
            .iter()
            .find(|r| r.tensor.same(&key))
            .map(|r| r.tensor.clone())
            .unwrap_or_else(|| Arc::new(key))
    }

    fn find(&self, tensor: &Arc<TensorKey>, index: usize) -> Option<usize> {
        self.resident
            .iter()
            .position(|r| Arc::ptr_eq(&r.tensor, tensor) && r.index == index)
    }

    /// Whether window `index` of `tensor` is on the device.
    pub(crate) fn is_resident(&self, tensor: &Arc<TensorKey>, index: usize) -> bool {
        self.find(tensor, index).is_some()
    }

    /// Whether window `index` of `tensor` is resident as the file's own pages.
    pub(crate) fn is_adopted(&self, tensor: &Arc<TensorKey>, index: usize) -> bool {
        self.find(tensor, index)
            .is_some_and(|i| self.resident[i].adopted)
    }

    /// The buffer of a resident window.
    pub(crate) fn buffer(&self, tensor: &Arc<TensorKey>, index: usize) -> Option<&wgpu::Buffer> {
        self.find(tensor, index).map(|i| &self.resident[i].buffer)
    }

    /// Creates, in parallel, the fresh buffers that making `windows` (index, bytes) of
    /// `tensor` resident will take, when they all fit beside the resident windows (and so
    /// none is evicted) and no dead window of `tensor` can be reused instead. Only where
    /// buffers are created mapped: wgpu then zeroes each one's memory on the creating thread,
    /// which on a software adapter is first-touch page faulting, slow on one core.
    pub(crate) fn make_ahead(
        &mut self,
        gpu: &Gpu,
        tensor: &Arc<TensorKey>,
        windows: &[(usize, u64)],
        dead: impl Fn(usize) -> bool,
    ) -> Result<()> {
        use rayon::prelude::*;
        if !self.direct {
            return Ok(());
        }
        let missing: Vec<u64> = windows
            .iter()
            .filter(|(w, _)| !self.is_resident(tensor, *w))
            .map(|&(_, bytes)| bytes)
            .collect();
        let held = self.held();
        let reusable = self
            .resident
            .iter()
            .any(|r| !r.adopted && Arc::ptr_eq(&r.tensor, tensor) && dead(r.index));
        if missing.len() < 2 || reusable || held + missing.iter().sum::<u64>() > self.budget {
            return Ok(());
        }
        let made: Vec<Result<wgpu::Buffer>> = missing
            .par_iter()
            .map(|&bytes| self.new_buffer(gpu, bytes))
            .collect();
        for buffer in made {
            self.spare.push(buffer?);
        }
        Ok(())
    }

    /// A new window buffer for `bytes` bytes (mapped if `direct`).
    fn new_buffer(&self, gpu: &Gpu, bytes: u64) -> Result<wgpu::Buffer> {
        // (read by the kernels, or by transfer commands: see `Mover::Copies`)
        let mut usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        if self.direct {
            usage |= wgpu::BufferUsages::MAP_WRITE;
        }
        gpu.buffer("old window", Self::size(bytes), usage, self.direct)
    }

    /// A buffer of whole `vec4<u32>`s (the split gather reads the one a window ends in).
    fn size(bytes: u64) -> u64 {
        bytes.next_multiple_of(16).max(16)
    }

    /// Makes window `index` of `tensor` resident: if it is not, calls `load` to upload its
    /// `bytes` bytes into a buffer of at least that size. The buffer of a window of `tensor`
    /// that the job no longer needs (`dead`) is reused first, even when the budget has room,
    /// so that a roughly monotonic remap streams through a few buffers (fresh memory is slow
    /// to fault in on a software driver, and scarce on a GPU). Otherwise windows are evicted
    /// only to stay within the budget: dead ones, then other tensors', then the least recently
    /// used; never one of `keep`, the windows the pending batch uses.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ensure(
        &mut self,
        gpu: &Gpu,
        tensor: &Arc<TensorKey>,
        index: usize,
        bytes: u64,
        keep: &[usize],
        dead: impl Fn(usize) -> bool,
        load: impl FnOnce(&wgpu::Buffer, bool) -> Result<()>,
    ) -> Result<()> {
        self.clock += 1;
        if let Some(i) = self.find(tensor, index) {
            self.resident[i].last_used = self.clock;
            return Ok(());
        }
        let evictable = |r: &Resident| {
            !(r.adopted || Arc::ptr_eq(&r.tensor, tensor) && keep.contains(&r.index))
        };
        let is_dead = |r: &Resident| Arc::ptr_eq(&r.tensor, tensor) && dead(r.index);
        let mut reused = None;
        // the dead window unused longest: the device is most likely done reading it
        if let Some((v, _)) = self
            .resident
            .iter()
            .enumerate()
            .filter(|(_, r)| evictable(r) && is_dead(r) && r.buffer.size() >= bytes)
            .min_by_key(|(_, r)| r.last_used)
        {
            reused = Some(self.resident.swap_remove(v).buffer);
        }
        let mut held = self.held();
        while reused.is_none() && held + bytes > self.budget {
            let victim = self
                .resident
                .iter()
                .enumerate()
                .filter(|(_, r)| evictable(r))
                .min_by_key(|(_, r)| {
                    let this = Arc::ptr_eq(&r.tensor, tensor);
                    (!is_dead(r), this, r.last_used)
                })
                .map(|(i, _)| i);
            let Some(v) = victim else { break };
            let old = self.resident.swap_remove(v);
            held -= old.buffer.size();
            if reused.is_none() && old.buffer.size() >= bytes {
                reused = Some(old.buffer);
            }
        }
        let made = self
            .spare
            .iter()
            .position(|b| b.size() == Self::size(bytes));
        let (buffer, mapped) = match (reused, made) {
            (Some(b), _) => (b, false),
            (None, Some(k)) => (self.spare.swap_remove(k), true),
            (None, None) => (self.new_buffer(gpu, bytes)?, self.direct),
        };
        load(&buffer, mapped)?;
        self.resident.push(Resident {
            tensor: tensor.clone(),
            index,
            buffer,
            last_used: self.clock,
            adopted: false,
        });
        Ok(())
    }

    /// Makes window `index` of `tensor` resident as `buffer`, the file's own pages.
    pub(crate) fn adopt(&mut self, tensor: &Arc<TensorKey>, index: usize, buffer: wgpu::Buffer) {
        self.clock += 1;
        self.adopted += 1;
        self.resident.push(Resident {
            tensor: tensor.clone(),
            index,
            buffer,
            last_used: self.clock,
            adopted: true,
        });
    }

    /// Bytes of device memory the resident windows hold.
    fn held(&self) -> u64 {
        self.resident
            .iter()
            .filter(|r| !r.adopted)
            .map(|r| r.buffer.size())
            .sum()
    }

    /// Drops every window.
    pub(crate) fn clear(&mut self) {
        self.resident.clear();
        self.spare.clear();
    }
}
