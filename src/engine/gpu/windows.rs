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
}

/// The resident windows.
pub(crate) struct Windows {
    /// New window buffers are created mapped and written in place (a software adapter with
    /// `MAPPABLE_PRIMARY_BUFFERS`, where device memory is host memory).
    direct: bool,
    budget: u64,
    resident: Vec<Resident>,
    clock: u64,
}

impl Windows {
    pub(crate) fn new(budget: u64, direct: bool) -> Self {
        Windows {
            direct,
            budget,
            resident: Vec::new(),
            clock: 0,
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

    /// The buffer of a resident window.
    pub(crate) fn buffer(&self, tensor: &Arc<TensorKey>, index: usize) -> Option<&wgpu::Buffer> {
        self.find(tensor, index).map(|i| &self.resident[i].buffer)
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
        let evictable = |r: &Resident| !(Arc::ptr_eq(&r.tensor, tensor) && keep.contains(&r.index));
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
        let mut held: u64 = self.resident.iter().map(|r| r.buffer.size()).sum();
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
        let (buffer, mapped) = match reused {
            Some(b) => (b, false),
            None => {
                let mut usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
                if self.direct {
                    usage |= wgpu::BufferUsages::MAP_WRITE;
                }
                let size = bytes.next_multiple_of(4).max(4);
                (
                    gpu.buffer("old window", size, usage, self.direct)?,
                    self.direct,
                )
            }
        };
        load(&buffer, mapped)?;
        self.resident.push(Resident {
            tensor: tensor.clone(),
            index,
            buffer,
            last_used: self.clock,
        });
        Ok(())
    }

    /// Drops every window.
    pub(crate) fn clear(&mut self) {
        self.resident.clear();
    }
}
