//! Old-table windows read where they lie: the checkpoint file's mapped pages imported as
//! device memory (`VK_EXT_external_memory_host`), on a software adapter.
//!
//! On Mesa's lavapipe, device memory is host memory. A window copied into a new buffer costs
//! the copy and first-touch page faults on the fresh buffer (on the machines this was
//! measured on, about 1 s per GB); an imported window costs neither, and the kernels read the
//! page cache as the CPU engine does. wgpu has no API for imports, so this module opens the
//! Vulkan device through wgpu-hal with the extension enabled, and wraps each imported
//! `VkBuffer` as a `wgpu::Buffer` that owns the import.
//!
//! Vulkan imports whole pages (`minImportedHostPointerAlignment`) and a buffer starts on its
//! memory's alignment (`VkMemoryRequirements::alignment`), so an imported buffer starts up to
//! [`HostMemory::lead_align`] bytes before the window: the window's *lead*, which the kernels
//! skip (`old_offset` in their parameters). Every window of a job whose leads are on is laid
//! out that way, imported or copied, so a failed import falls back to a copy without
//! changing the dispatches.
//!
//! The Vulkan calls are `unsafe`; the contract this module keeps: an imported range lies
//! inside a read-only map of a whole input file ([`crate::mmap::MappedFile`], whose contract
//! is that the file is not modified while mapped), the buffer keeps that map alive until the
//! device has dropped the buffer, and nothing writes to an imported buffer (window buffers
//! are reused for uploads only when they were not imported, see `windows.rs`).

use std::any::Any;
use std::ffi::c_void;

use ash::vk;
use wgpu::hal;
use wgpu::hal::api::Vulkan;

const HOST: vk::ExternalMemoryHandleTypeFlags =
    vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT;

/// Imports of host memory on a device opened with `VK_EXT_external_memory_host`.
pub(crate) struct HostMemory {
    device: ash::Device,
    ext: ash::ext::external_memory_host::Device,
    /// `minImportedHostPointerAlignment`: imports start and end on multiples of it.
    page: u64,
    /// Alignment of a storage buffer within its memory.
    buffer_align: u64,
}

/// A device, its queue, and its imports.
pub(crate) type Opened = (wgpu::Device, wgpu::Queue, Option<HostMemory>);

/// Opens a device on `adapter` with host-memory imports, when it is a Vulkan adapter (of
/// Vulkan 1.1 or later) that supports them; `None` otherwise (the caller then opens a plain
/// device). The imports are `None` when the driver turns out not to allow them for storage
/// buffers.
pub(crate) fn open(
    adapter: &wgpu::Adapter,
    desc: &wgpu::DeviceDescriptor<'_>,
) -> Option<Result<Opened, String>> {
    let name = ash::ext::external_memory_host::NAME;
    // SAFETY: the hal adapter is only used to query it and to open a device with the
    // features and limits `desc` asks for, plus one extension the adapter lists.
    let hal_adapter = unsafe { adapter.as_hal::<Vulkan>() }?;
    let shared = hal_adapter.shared_instance();
    let instance = shared.raw_instance();
    let physical = hal_adapter.raw_physical_device();
    // SAFETY: queries of a valid physical device of this instance.
    let supported = unsafe { instance.enumerate_device_extension_properties(physical) }.ok()?;
    let api = unsafe { instance.get_physical_device_properties(physical) }.api_version;
    if api.min(shared.instance_api_version()) < vk::API_VERSION_1_1
        || !supported
            .iter()
            .any(|e| e.extension_name_as_c_str() == Ok(name))
    {
        return None;
    }
    let mut host = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
    let mut properties = vk::PhysicalDeviceProperties2::default().push_next(&mut host);
    // SAFETY: Vulkan 1.1 query with a valid chain.
    unsafe { instance.get_physical_device_properties2(physical, &mut properties) };
    let page = host.min_imported_host_pointer_alignment.max(1);
    // SAFETY: the callback only adds an extension the physical device supports.
    let opened = unsafe {
        hal_adapter.open_with_callback(
            desc.required_features,
            &desc.required_limits,
            &desc.memory_hints,
            Some(Box::new(
                move |args: hal::vulkan::CreateDeviceCallbackArgs| {
                    if !args.extensions.contains(&name) {
                        args.extensions.push(name);
                    }
                },
            )),
        )
    };
    let opened = match opened {
        Ok(o) => o,
        Err(e) => return Some(Err(e.to_string())),
    };
    let device = opened.device.raw_device().clone();
    let ext = ash::ext::external_memory_host::Device::new(instance, &device);
    drop(hal_adapter);
    // SAFETY: `opened` comes from this adapter with `desc`'s features and limits.
    let made = unsafe { adapter.create_device_from_hal(opened, desc) };
    let (wgpu_device, queue) = match made {
        Ok(dq) => dq,
        Err(e) => return Some(Err(e.to_string())),
    };
    let mut host = HostMemory {
        device,
        ext,
        page,
        buffer_align: 1,
    };
    // The alignment a storage buffer needs within its memory, from a probe buffer.
    let Some((buffer, requirements)) = host.new_buffer(page) else {
        return Some(Ok((wgpu_device, queue, None)));
    };
    host.buffer_align = requirements.alignment.max(1);
    // SAFETY: the probe buffer was never bound or used.
    unsafe { host.device.destroy_buffer(buffer, None) };
    Some(Ok((wgpu_device, queue, Some(host))))
}

impl HostMemory {
    /// The alignment of an imported buffer's start: windows begin up to this many bytes
    /// after their buffer's (the lead). A multiple of 4.
    pub(crate) fn lead_align(&self) -> u64 {
        self.buffer_align.next_multiple_of(4)
    }

    /// A `VkBuffer` of `size` bytes that can be bound to imported host memory, and its memory
    /// requirements.
    fn new_buffer(&self, size: u64) -> Option<(vk::Buffer, vk::MemoryRequirements)> {
        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(HOST);
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_SRC)
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .push_next(&mut external);
        // SAFETY: a valid create info on this device.
        let buffer = unsafe { self.device.create_buffer(&info, None) }.ok()?;
        // SAFETY: `buffer` is a valid buffer of this device.
        let requirements = unsafe { self.device.get_buffer_memory_requirements(buffer) };
        Some((buffer, requirements))
    }

    /// A read-only storage (and copy source) buffer that holds `bytes` from its byte `lead`
    /// on. `None` when the range cannot be imported: the buffer's start (`bytes` minus `lead`)
    /// off the driver's buffer alignment, pages outside `mapping` (rounded out to whole
    /// pages), or a driver refusal; the caller then copies the window.
    ///
    /// # Safety
    /// `mapping` is a read-only map of a whole file, `bytes` lies within it, and `keep`
    /// keeps the map alive; the file is not modified while the buffer lives; the buffer is
    /// never written.
    pub(crate) unsafe fn import(
        &self,
        device: &wgpu::Device,
        bytes: &[u8],
        lead: u64,
        mapping: &[u8],
        keep: Box<dyn Any + Send + Sync>,
    ) -> Option<wgpu::Buffer> {
        let start = (bytes.as_ptr() as u64).checked_sub(lead)?;
        if !start.is_multiple_of(self.buffer_align) {
            return None;
        }
        let size = (lead + bytes.len() as u64).next_multiple_of(16);
        let base = start - start % self.page;
        let top = (start + size).next_multiple_of(self.page);
        let map_start = mapping.as_ptr() as u64;
        // a map covers whole pages (of at least 4 KiB): its last one is readable to its end
        let map_end = (map_start + mapping.len() as u64).next_multiple_of(4096);
        if base < map_start || top > map_end {
            return None;
        }
        let (buffer, requirements) = self.new_buffer(size)?;
        let offset = start - base;
        let destroy = |memory: Option<vk::DeviceMemory>| {
            // SAFETY: objects of this device that nothing uses yet.
            unsafe {
                self.device.destroy_buffer(buffer, None);
                if let Some(m) = memory {
                    self.device.free_memory(m, None);
                }
            }
        };
        if !offset.is_multiple_of(requirements.alignment) || offset + requirements.size > top - base
        {
            destroy(None);
            return None;
        }
        let mut pointer = vk::MemoryHostPointerPropertiesEXT::default();
        // SAFETY: `base` is page-aligned host memory within a live map.
        let queried = unsafe {
            (self.ext.fp().get_memory_host_pointer_properties_ext)(
                self.device.handle(),
                HOST,
                base as *const c_void,
                &mut pointer,
            )
        };
        let types = pointer.memory_type_bits & requirements.memory_type_bits;
        if queried != vk::Result::SUCCESS || types == 0 {
            destroy(None);
            return None;
        }
        let mut import = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(HOST)
            .host_pointer(base as *mut c_void);
        let allocate = vk::MemoryAllocateInfo::default()
            .allocation_size(top - base)
            .memory_type_index(types.trailing_zeros())
            .push_next(&mut import);
        // SAFETY: `base..top` is whole pages of a live map, kept alive by `keep`.
        let Ok(memory) = (unsafe { self.device.allocate_memory(&allocate, None) }) else {
            destroy(None);
            return None;
        };
        // SAFETY: `offset` satisfies the buffer's alignment and its size fits the memory.
        if unsafe { self.device.bind_buffer_memory(buffer, memory, offset) }.is_err() {
            destroy(Some(memory));
            return None;
        }
        let owner = self.device.clone();
        let release: hal::DropCallback = Box::new(move || {
            // SAFETY: wgpu-hal runs this once the device no longer uses the buffer.
            unsafe {
                owner.destroy_buffer(buffer, None);
                owner.free_memory(memory, None);
            }
            drop(keep);
        });
        // SAFETY: a buffer of this device, `size` bytes, storage and transfer-source usage,
        // initialised (file bytes), released by `release` after wgpu is done with it.
        let hal_buffer = unsafe { hal::vulkan::Buffer::from_raw_externally_owned(buffer, release) };
        Some(unsafe {
            device.create_buffer_from_hal::<Vulkan>(
                hal_buffer,
                &wgpu::BufferDescriptor {
                    label: Some("old window (file pages)"),
                    size,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                },
            )
        })
    }
}
