//! Adapter and device acquisition, and the device context every other module uses: bounded
//! waits, error capture and checked buffer creation.
//!
//! Adapter choice: wgpu's instance is created from the environment (`WGPU_BACKEND`,
//! `WGPU_POWER_PREF`, `WGPU_DEBUG`, ...). `WGPU_ADAPTER_NAME` is matched here (a
//! case-insensitive substring of the adapter's name, like wgpu's own helper, which panics when
//! nothing matches; this returns an error naming the adapters there are). Otherwise hardware
//! adapters come first (discrete, then integrated, unless `WGPU_POWER_PREF=low`), the software
//! driver (a `Cpu` adapter such as Mesa's lavapipe) last. The device is requested with the
//! adapter's own limits, so windows can be as large as the hardware allows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ash::vk;
use wgpu::hal::api::Vulkan;

use super::host_memory::{self, HostMemory};
use crate::error::{Error, GpuFailure, Result};

/// Environment variable naming the adapter to use (case-insensitive substring of its name).
pub const ADAPTER_NAME_VAR: &str = "WGPU_ADAPTER_NAME";

/// The adapters wgpu finds with the environment's backends.
fn enumerate() -> Vec<wgpu::Adapter> {
    let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    let backends = desc.backends;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(backends))
}

/// Preference rank of an adapter type: lower is better.
fn rank(kind: wgpu::DeviceType, low_power: bool) -> u8 {
    match (kind, low_power) {
        (wgpu::DeviceType::DiscreteGpu, false) | (wgpu::DeviceType::IntegratedGpu, true) => 0,
        (wgpu::DeviceType::IntegratedGpu, false) | (wgpu::DeviceType::DiscreteGpu, true) => 1,
        (wgpu::DeviceType::VirtualGpu, _) => 2,
        (wgpu::DeviceType::Other, _) => 3,
        (wgpu::DeviceType::Cpu, _) => 4,
    }
}

/// Picks the adapter the GPU engine would use, honouring `WGPU_ADAPTER_NAME`.
pub(crate) fn select_adapter() -> Result<wgpu::Adapter> {
    select_adapter_named(std::env::var_os(ADAPTER_NAME_VAR))
}

/// [`select_adapter`] with the value of `WGPU_ADAPTER_NAME` given.
fn select_adapter_named(wanted: Option<std::ffi::OsString>) -> Result<wgpu::Adapter> {
    let adapters = enumerate();
    let names = || {
        adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend)
            })
            .collect::<Vec<_>>()
    };
    if let Some(wanted) = wanted {
        let wanted = wanted.to_string_lossy().to_lowercase();
        return adapters
            .iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
            .cloned()
            .ok_or_else(|| {
                Error::gpu(
                    GpuFailure::NoDevice,
                    format!(
                        "{ADAPTER_NAME_VAR}={wanted:?} matches no adapter; adapters found: {:?}",
                        names()
                    ),
                )
            });
    }
    let low_power = wgpu::PowerPreference::from_env() == Some(wgpu::PowerPreference::LowPower);
    adapters
        .iter()
        .min_by_key(|a| rank(a.get_info().device_type, low_power))
        .cloned()
        .ok_or_else(|| {
            // (wgpu ignores backend names it does not know: a typo there finds nothing)
            let backends = match std::env::var("WGPU_BACKEND") {
                Ok(v) => format!("; WGPU_BACKEND={v:?} limits the backends tried"),
                Err(_) => String::new(),
            };
            Error::gpu(
                GpuFailure::NoDevice,
                format!(
                    "no GPU adapter found (wgpu: Vulkan, Metal or DX12){backends}; install a \
                     driver (on Debian: mesa-vulkan-drivers libvulkan1), or use the CPU engine \
                     (`--backend cpu` on the command line)"
                ),
            )
        })
}

/// Test helper: a device of the adapter the engine would pick, requested as the engine
/// requests it; `None`, with a notice, where there is none, unless `WARMSTART_REQUIRE_GPU=1`
/// (CI), where that is a failure.
#[cfg(test)]
pub(crate) fn test_device() -> Option<(wgpu::Device, wgpu::Queue)> {
    match select_adapter().and_then(|a| request_device(&a)) {
        Ok((device, queue, _)) => Some((device, queue)),
        Err(e) if std::env::var("WARMSTART_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("WARMSTART_REQUIRE_GPU=1 but no device: {e}")
        }
        Err(e) => {
            eprintln!("NOTICE: skipping GPU test, no device: {e}");
            None
        }
    }
}

/// Whether the adapter the GPU engine would pick is hardware (not a software rasteriser
/// such as lavapipe). `--backend auto` uses the GPU engine only then.
///
/// On Linux a hardware GPU needs a device node (`/dev/dri/renderD*`, `/dev/nvidia*`,
/// `/dev/dxg` under WSL); without one no graphics API is loaded at all, which keeps a plain CPU
/// host fast and free of driver messages.
pub fn hardware_adapter_available() -> bool {
    gpu_device_node_present()
        && select_adapter().is_ok_and(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

#[cfg(target_os = "linux")]
fn gpu_device_node_present() -> bool {
    let dri = std::fs::read_dir("/dev/dri").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    });
    dri || ["/dev/nvidiactl", "/dev/dxg"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

#[cfg(not(target_os = "linux"))]
fn gpu_device_node_present() -> bool {
    true
}

/// Bytes of the largest device-local memory heap of a Vulkan adapter: on a discrete GPU, its
/// own memory (wgpu has no query for it, so this asks the Vulkan driver through wgpu-hal).
/// `None` on other backends.
pub(crate) fn device_local_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the hal adapter is only queried, and dropped before this returns.
    let hal_adapter = unsafe { adapter.as_hal::<Vulkan>() }?;
    let instance = hal_adapter.shared_instance().raw_instance();
    // SAFETY: a query of a valid physical device of this instance.
    let memory = unsafe {
        instance.get_physical_device_memory_properties(hal_adapter.raw_physical_device())
    };
    (memory.memory_heaps_as_slice().iter())
        .filter(|heap| heap.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
        .map(|heap| heap.size)
        .max()
}

/// Requests a device with the adapter's own limits. On a software adapter, whose "device
/// memory" is host memory, also `MAPPABLE_PRIMARY_BUFFERS`, so that output chunks are read
/// where the kernels wrote them instead of through a copy, and, where the Vulkan driver
/// offers it, host-memory imports, so that old tables are read in the mapped checkpoint
/// files instead of copied ([`HostMemory`]), and 64-bit integers, which halve the work of its
/// row gathers (`gather_rows.rs`).
pub(crate) fn request_device(
    adapter: &wgpu::Adapter,
) -> Result<(wgpu::Device, wgpu::Queue, Option<HostMemory>)> {
    let mut required_features = wgpu::Features::empty();
    let software = adapter.get_info().device_type == wgpu::DeviceType::Cpu;
    if software {
        required_features |= adapter.features()
            & (wgpu::Features::MAPPABLE_PRIMARY_BUFFERS | wgpu::Features::SHADER_INT64);
    }
    let desc = wgpu::DeviceDescriptor {
        label: Some("warmstart"),
        required_features,
        required_limits: adapter.limits(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    };
    let cannot = |e: &dyn std::fmt::Display| {
        Error::gpu(
            GpuFailure::NoDevice,
            format!("cannot open a device on {}: {e}", adapter.get_info().name),
        )
    };
    if software {
        if let Some(opened) = host_memory::open(adapter, &desc) {
            return opened.map_err(|e| cannot(&e));
        }
    }
    let (device, queue) =
        pollster::block_on(adapter.request_device(&desc)).map_err(|e| cannot(&e))?;
    Ok((device, queue, None))
}

/// A device and queue, with bounded waits and error capture.
pub(crate) struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// How long a wait for the device may take before the engine gives up.
    pub(crate) timeout: Duration,
    /// Set by the device-lost callback and the uncaptured-error handler (devices the engine
    /// opened itself; a caller's device keeps the caller's handlers). A lost device is kept
    /// for good; any other fault fails the job during which it was recorded, and is dropped
    /// when the next job starts (`check_before_job`).
    pub(crate) fault: Arc<Mutex<Option<Fault>>>,
    /// Host-memory imports, on a device the engine opened with them.
    pub(crate) host: Option<HostMemory>,
}

impl Gpu {
    pub(crate) fn new(device: wgpu::Device, queue: wgpu::Queue, timeout: Duration) -> Self {
        Gpu {
            device,
            queue,
            timeout,
            fault: Arc::new(Mutex::new(None)),
            host: None,
        }
    }

    /// Installs handlers that record device loss and errors outside any error scope, instead
    /// of wgpu's default (a panic). Only for a device the engine opened.
    pub(crate) fn install_handlers(&self) {
        let fault = self.fault.clone();
        self.device
            .set_device_lost_callback(move |reason, message| {
                record(
                    &fault,
                    Fault::new(
                        GpuFailure::DeviceLost,
                        format!("device lost ({reason:?}): {message}"),
                    ),
                );
            });
        let fault = self.fault.clone();
        self.device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                record(&fault, Fault::of(&e))
            }));
    }

    /// Before a job: an error recorded since the last job ended came from work outside the
    /// engine's (the caller's own, on a device the engine opened, whose handler took it in
    /// place of wgpu's default panic). It is dropped rather than charged to this job; a lost
    /// device stays lost.
    pub(crate) fn check_before_job(&self) -> Result<()> {
        if let Ok(mut f) = self.fault.lock() {
            if f.as_ref().is_some_and(|f| f.kind != GpuFailure::DeviceLost) {
                *f = None;
            }
        }
        self.check()
    }

    /// The recorded fault, if any.
    pub(crate) fn check(&self) -> Result<()> {
        match self.fault.lock().map(|f| f.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(fault)) => Err(fault.into()),
            Err(_) => Err(Error::gpu(
                GpuFailure::Internal,
                "the device error handler panicked",
            )),
        }
    }

    /// Blocks until `submission` has finished on the device (its map callbacks have then run),
    /// at most `timeout`.
    pub(crate) fn wait(&self, submission: &wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission.clone()),
                timeout: Some(self.timeout),
            })
            .map_err(|e| match e {
                wgpu::PollError::Timeout => Error::gpu(
                    GpuFailure::Timeout,
                    format!(
                        "the device did not finish its work within {:?}",
                        self.timeout
                    ),
                ),
                other => Error::gpu(
                    GpuFailure::Internal,
                    format!("waiting for the device: {other}"),
                ),
            })?;
        self.check()
    }

    /// Creates a buffer, turning out-of-memory and validation errors into [`Error::Gpu`] now
    /// rather than at its first use.
    pub(crate) fn buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
        mapped_at_creation: bool,
    ) -> Result<wgpu::Buffer> {
        let scopes = Scopes::push(&self.device);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation,
        });
        match scopes.pop() {
            None => Ok(buffer),
            Some(fault) => Err(Error::gpu(
                fault.kind,
                format!(
                    "cannot allocate {label} buffer of {size} bytes: {}",
                    fault.message
                ),
            )),
        }
    }
}

/// The first fault is kept, unless a loss of the device follows it: what follows a lost
/// device is its consequence, and what came before may have been its first symptom.
fn record(slot: &Mutex<Option<Fault>>, fault: Fault) {
    if let Ok(mut f) = slot.lock() {
        let lost = |f: &Fault| f.kind == GpuFailure::DeviceLost;
        if f.as_ref().is_none_or(|first| lost(&fault) && !lost(first)) {
            *f = Some(fault);
        }
    }
}

/// A GPU failure as the engine's threads and caches keep it (an [`Error`] cannot be cloned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) kind: GpuFailure,
    pub(crate) message: String,
}

impl Fault {
    pub(crate) fn new(kind: GpuFailure, message: impl Into<String>) -> Self {
        Fault {
            kind,
            message: message.into(),
        }
    }

    /// A device error reported by wgpu.
    fn of(e: &wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { .. } => {
                Fault::new(GpuFailure::OutOfMemory, "out of device memory")
            }
            other => Fault::new(GpuFailure::Internal, other.to_string()),
        }
    }
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Self {
        Error::Gpu {
            kind: f.kind,
            message: f.message,
        }
    }
}

/// Error scopes for out-of-memory, validation and internal errors, popped together. Errors of
/// the calling thread's operations on the device land here instead of the device's
/// uncaptured-error handler.
pub(crate) struct Scopes {
    guards: Vec<wgpu::ErrorScopeGuard>,
}

impl Scopes {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        Scopes {
            guards: vec![
                device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
                device.push_error_scope(wgpu::ErrorFilter::Validation),
                device.push_error_scope(wgpu::ErrorFilter::Internal),
            ],
        }
    }

    /// Pops the scopes (innermost first) and returns the first error captured, if any.
    pub(crate) fn pop(mut self) -> Option<Fault> {
        let mut first = None;
        while let Some(guard) = self.guards.pop() {
            if let Some(e) = pollster::block_on(guard.pop()) {
                first.get_or_insert_with(|| Fault::of(&e));
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named adapter that is not there is `NoDevice`, whatever adapters the machine has.
    #[test]
    fn a_missing_named_adapter_is_no_device() {
        let e = select_adapter_named(Some("no such adapter anywhere".into())).unwrap_err();
        assert_eq!(e.gpu_failure(), Some(GpuFailure::NoDevice), "{e}");
        assert!(e.to_string().contains(ADAPTER_NAME_VAR), "{e}");
        assert_eq!(e.exit_code(), 1);
    }

    /// A device lost after another fault is reported as lost; later faults do not replace
    /// the first.
    #[test]
    fn a_device_loss_outranks_earlier_faults() {
        let slot = Mutex::new(None);
        record(&slot, Fault::new(GpuFailure::Internal, "first"));
        record(&slot, Fault::new(GpuFailure::OutOfMemory, "second"));
        assert_eq!(slot.lock().unwrap().as_ref().unwrap().message, "first");
        record(&slot, Fault::new(GpuFailure::DeviceLost, "lost"));
        record(&slot, Fault::new(GpuFailure::DeviceLost, "lost again"));
        record(&slot, Fault::new(GpuFailure::Internal, "after"));
        assert_eq!(slot.lock().unwrap().as_ref().unwrap().message, "lost");
    }

    /// wgpu's out-of-memory errors are `OutOfMemory`, its validation and internal errors
    /// `Internal`.
    #[test]
    fn device_errors_are_sorted_by_kind() {
        let source = || Box::new(std::io::Error::other("driver")) as wgpu::ErrorSource;
        let oom = Fault::of(&wgpu::Error::OutOfMemory { source: source() });
        assert_eq!(oom.kind, GpuFailure::OutOfMemory);
        let invalid = Fault::of(&wgpu::Error::Validation {
            source: source(),
            description: "a bad binding".into(),
        });
        assert_eq!(invalid.kind, GpuFailure::Internal);
        assert!(invalid.message.contains("a bad binding"), "{invalid:?}");
        let internal = Fault::of(&wgpu::Error::Internal {
            source: source(),
            description: "a driver fault".into(),
        });
        assert_eq!(internal.kind, GpuFailure::Internal);
    }

    /// A Vulkan adapter (lavapipe in CI: its device-local heap is the host's memory) reports
    /// the size of its device memory; other backends report none.
    #[test]
    fn vulkan_adapters_report_their_device_memory() {
        let adapter = match select_adapter() {
            Ok(a) => a,
            Err(e) if std::env::var("WARMSTART_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("WARMSTART_REQUIRE_GPU=1 but no adapter: {e}")
            }
            Err(e) => return eprintln!("NOTICE: no adapter, skipped: {e}"),
        };
        let own = device_local_memory(&adapter);
        match adapter.get_info().backend {
            wgpu::Backend::Vulkan => {
                let bytes = own.expect("a Vulkan adapter has a device-local heap");
                assert!(bytes >= 64 << 20, "{bytes} bytes");
            }
            _ => assert_eq!(own, None),
        }
    }
}
