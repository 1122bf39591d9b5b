//! The calling guest's memory 0, seen through WasmEdge's C API. Every access is checked
//! against the memory's current size here, and again by WasmEdge's own GetPointer.

use super::ffi::*;
use crate::abi::{range, GuestMemory};
use crate::error::{NnError, NnResult};

const PAGE: u64 = 65536;

pub struct FrameMemory {
    memory: *mut WasmEdge_MemoryInstanceContext,
    size: u64,
}

impl FrameMemory {
    /// The memory of the calling frame, or None when the guest exports no memory.
    ///
    /// # Safety
    /// `frame` is the calling frame WasmEdge passed to the current host function call.
    pub unsafe fn of_frame(frame: *const WasmEdge_CallingFrameContext) -> Option<Self> {
        // SAFETY: WasmEdge passes a valid frame for the duration of the call.
        let memory = unsafe { WasmEdge_CallingFrameGetMemoryInstance(frame, 0) };
        if memory.is_null() {
            return None;
        }
        // SAFETY: `memory` is a live memory instance of the calling module.
        let size = u64::from(unsafe { WasmEdge_MemoryInstanceGetPageSize(memory) }) * PAGE;
        Some(Self { memory, size })
    }

    /// A pointer to `len` bytes at `offset`, after both bounds checks; None for an empty range.
    fn pointer(&self, offset: u32, len: u32) -> NnResult<Option<*mut u8>> {
        if range(offset, len, self.size)?.is_none() {
            return Ok(None);
        }
        // SAFETY: the memory instance is live for the whole host call; GetPointer checks the
        // range again and returns null when it is not inside the memory.
        let p = unsafe { WasmEdge_MemoryInstanceGetPointer(self.memory, offset.into(), len.into()) };
        if p.is_null() {
            return Err(NnError::out_of_bounds(offset, len));
        }
        Ok(Some(p))
    }
}

impl GuestMemory for FrameMemory {
    fn bytes(&self, offset: u32, len: u32) -> NnResult<&[u8]> {
        let Some(p) = self.pointer(offset, len)? else {
            return Ok(&[]);
        };
        // SAFETY: `p` points to `len` bytes inside the guest memory, which does not move or
        // shrink during a host call; the guest is suspended while the host runs.
        Ok(unsafe { std::slice::from_raw_parts(p, len as usize) })
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> NnResult<()> {
        let len = u32::try_from(data.len()).map_err(|_| NnError::out_of_bounds(offset, u32::MAX))?;
        let Some(p) = self.pointer(offset, len)? else {
            return Ok(());
        };
        // SAFETY: as in `bytes`; `data` is host memory, so the ranges cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }
}
