//! Submissions on a thread of their own.
//!
//! `Queue::submit` hands work to the driver. A GPU's driver returns at once and the device
//! runs the work while the host goes on. Mesa's software driver (lavapipe) runs the work
//! inside the call instead, on the calling thread, its shader threads computing while that
//! thread waits: submitted from the engine's thread, a chunk's planning and recording and the
//! copy of an earlier chunk to the sink would never overlap the chunk's execution (seen in
//! traces: `submit` took the 3 ms a 4 MiB chunk takes to compute).
//!
//! So the engine hands each finished command buffer to a submitter thread, which submits them
//! in the order given, each inside its own error scopes, and resolves a [`Ticket`] per
//! submission: its index, or the error it raised. Waiting for a buffer to be mapped back first
//! waits for its ticket (`stream.rs`).

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::device::{Fault, Scopes};
use crate::error::{Error, GpuFailure, Result};

/// What became of one submission, once the submitter got to it.
type Outcome = std::result::Result<wgpu::SubmissionIndex, Fault>;

/// The outcome of one handed-over submission, when there is one.
pub(crate) struct Ticket {
    outcome: Mutex<Option<Outcome>>,
    resolved: Condvar,
}

impl Ticket {
    fn new() -> Arc<Self> {
        Arc::new(Ticket {
            outcome: Mutex::new(None),
            resolved: Condvar::new(),
        })
    }

    fn resolve(&self, outcome: Outcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(outcome);
        self.resolved.notify_all();
    }

    /// Blocks, at most `timeout`, until the work has been submitted; its submission index.
    pub(crate) fn wait(&self, timeout: Duration) -> Result<wgpu::SubmissionIndex> {
        let slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, _) = self
            .resolved
            .wait_timeout_while(slot, timeout, |o| o.is_none())
            .unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(Ok(index)) => Ok(index.clone()),
            Some(Err(fault)) => Err(fault.clone().into()),
            None => Err(Error::gpu(
                GpuFailure::Timeout,
                format!("the device did not take the work within {timeout:?}"),
            )),
        }
    }
}

/// A ticket on its way through the channel: resolved as failed if it is dropped unresolved
/// (the thread stopped, or the channel was dropped with it).
struct Pending(Option<Arc<Ticket>>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(ticket) = self.0.take() {
            ticket.resolve(Err(Fault::new(
                GpuFailure::Internal,
                "the submitting thread stopped before this work",
            )));
        }
    }
}

/// The submitter thread and the last ticket handed to it.
pub(crate) struct Submitter {
    /// For submitting inline where there is no thread.
    device: wgpu::Device,
    queue: wgpu::Queue,
    sender: Option<mpsc::Sender<(wgpu::CommandBuffer, Pending)>>,
    thread: Option<JoinHandle<()>>,
    last: Option<Arc<Ticket>>,
    /// The index of the last submission a [`Submitter::flush`] saw made.
    flushed: Option<wgpu::SubmissionIndex>,
    /// The first error of a submission since the last [`Submitter::flush`].
    error: Arc<Mutex<Option<Fault>>>,
}

impl Submitter {
    /// Starts the thread; submits inline where no thread can be started.
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let (sender, receiver) = mpsc::channel::<(wgpu::CommandBuffer, Pending)>();
        let error = Arc::new(Mutex::new(None));
        let (d, q, first) = (device.clone(), queue.clone(), error.clone());
        let thread = std::thread::Builder::new()
            .name("warmstart-submit".into())
            .spawn(move || {
                for (commands, ticket) in receiver {
                    let outcome = submit(&d, &q, commands, &first);
                    if let Some(ticket) = &ticket.0 {
                        ticket.resolve(outcome);
                    }
                }
            })
            .ok();
        Submitter {
            device: device.clone(),
            queue: queue.clone(),
            sender: thread.is_some().then_some(sender),
            thread,
            last: None,
            flushed: None,
            error,
        }
    }

    /// Hands `commands` over for submission after those handed before (submitted right here
    /// when there is no thread).
    pub(crate) fn submit(&mut self, commands: wgpu::CommandBuffer) -> Arc<Ticket> {
        let ticket = Ticket::new();
        let handed = match &self.sender {
            Some(sender) => sender
                .send((commands, Pending(Some(ticket.clone()))))
                .map_err(|mpsc::SendError((commands, mut pending))| {
                    pending.0 = None; // submitted inline below
                    commands
                }),
            None => Err(commands),
        };
        if let Err(commands) = handed {
            ticket.resolve(submit(&self.device, &self.queue, commands, &self.error));
        }
        self.last = Some(ticket.clone());
        ticket
    }

    /// Waits, at most `timeout`, until everything handed over has been submitted; the first
    /// error any of those submissions raised.
    pub(crate) fn flush(&mut self, timeout: Duration) -> Result<()> {
        let waited = match self.last.take() {
            Some(last) => last.wait(timeout).map(|index| self.flushed = Some(index)),
            None => Ok(()),
        };
        let first = self.error.lock().unwrap_or_else(|e| e.into_inner()).take();
        match first {
            Some(fault) => Err(fault.into()),
            None => waited,
        }
    }
}

impl Submitter {
    /// The last submission the last [`Submitter::flush`] saw made, if any.
    pub(crate) fn flushed(&self) -> Option<&wgpu::SubmissionIndex> {
        self.flushed.as_ref()
    }
}

impl Drop for Submitter {
    fn drop(&mut self) {
        // the thread submits what it was given, then ends
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One submission inside error scopes of the submitting thread (scopes are per thread); an
/// error is also kept in `first` unless one is there already.
fn submit(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    commands: wgpu::CommandBuffer,
    first: &Mutex<Option<Fault>>,
) -> Outcome {
    let scopes = Scopes::push(device);
    let index = queue.submit([commands]);
    match scopes.pop() {
        Some(fault) => {
            let mut first = first.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| fault.clone());
            Err(fault)
        }
        None => Ok(index),
    }
}

#[cfg(test)]
mod tests {
    use wgpu::util::DeviceExt;
    use wgpu::BufferUsages as U;

    use super::*;
    use crate::engine::gpu::device::test_device;

    const WAIT: Duration = Duration::from_secs(60);

    /// Work goes to the submitter thread in order; an error one submission raises there
    /// comes back through its ticket and the next flush, and later work still runs.
    #[test]
    fn submissions_keep_their_order_and_report_their_errors() {
        let Some((device, queue)) = test_device() else {
            return;
        };
        let words = |data: &[u32], usage| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(data),
                usage,
            })
        };
        let (a, b) = (words(&[1, 2], U::COPY_SRC), words(&[7, 8], U::COPY_SRC));
        let gone = words(&[9, 9], U::COPY_SRC);
        let out = words(&[0, 0, 0, 0], U::COPY_SRC | U::COPY_DST);
        let read = words(&[0, 0, 0, 0], U::COPY_DST | U::MAP_READ);
        let copy = |from: &wgpu::Buffer, at: u64| {
            let mut encoder = device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(from, 0, &out, at, 8);
            encoder.finish()
        };

        let mut submitter = Submitter::new(&device, &queue);
        let first = submitter.submit(copy(&a, 0));
        let failing = copy(&gone, 8);
        gone.destroy(); // submitting a destroyed buffer's use is a validation error
        let bad = submitter.submit(failing);
        let last = submitter.submit(copy(&b, 8));
        let err = submitter.flush(WAIT).unwrap_err();
        assert!(err.to_string().contains("destroyed"), "{err}");
        assert_eq!(err.gpu_failure(), Some(GpuFailure::Internal));
        assert!(first.wait(WAIT).is_ok());
        assert!(bad.wait(WAIT).is_err());
        last.wait(WAIT).unwrap();
        // the error was reported once
        assert!(submitter.flush(WAIT).is_ok());

        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&out, 0, &read, 0, 16);
        submitter.submit(encoder.finish());
        submitter.flush(WAIT).unwrap();
        read.slice(..)
            .map_async(wgpu::MapMode::Read, |r| r.unwrap());
        device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(WAIT),
            })
            .unwrap();
        let view = read.slice(..).get_mapped_range().unwrap();
        let got: &[u32] = bytemuck::cast_slice(&view);
        assert_eq!(got, [1, 2, 7, 8]);
    }

    /// Work the submitter has not taken within the timeout is a `Timeout`.
    #[test]
    fn an_unresolved_ticket_times_out() {
        let err = Ticket::new().wait(Duration::from_millis(1)).unwrap_err();
        assert_eq!(err.gpu_failure(), Some(GpuFailure::Timeout), "{err}");
        assert!(err.to_string().contains("did not take the work"), "{err}");
    }
}
