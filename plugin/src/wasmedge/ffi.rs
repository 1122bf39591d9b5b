//! The few WasmEdge C API items the plugin uses, declared by hand from `wasmedge.h`
//! (0.14.1; unchanged in the parts used here through 0.17). Declaring them here rather than
//! through bindgen keeps the build free of WasmEdge headers and libraries, and lets one
//! binary serve several WasmEdge versions.
#![allow(non_snake_case, non_camel_case_types, non_upper_case_globals, dead_code)]

use std::ffi::{c_char, c_void};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct WasmEdge_String {
    pub Length: u32,
    pub Buf: *const c_char,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct WasmEdge_Result {
    pub Code: u32,
}

/// `uint8_t Data[8]` since WasmEdge 0.14.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WasmEdge_ValType {
    pub Data: [u8; 8],
}

/// `{ uint128_t Value; WasmEdge_ValType Type; }`: 32 bytes, 16-aligned, as in C.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WasmEdge_Value {
    pub Value: u128,
    pub Type: WasmEdge_ValType,
}
const _: () = assert!(std::mem::size_of::<WasmEdge_Value>() == 32 && std::mem::align_of::<WasmEdge_Value>() == 16);

pub enum WasmEdge_ModuleInstanceContext {}
pub enum WasmEdge_FunctionTypeContext {}
pub enum WasmEdge_FunctionInstanceContext {}
pub enum WasmEdge_CallingFrameContext {}
pub enum WasmEdge_MemoryInstanceContext {}

pub type WasmEdge_HostFunc_t = unsafe extern "C" fn(
    data: *mut c_void,
    frame: *const WasmEdge_CallingFrameContext,
    params: *const WasmEdge_Value,
    returns: *mut WasmEdge_Value,
) -> WasmEdge_Result;

pub const WasmEdge_ProgramOptionType_UInt32: u32 = 8;
pub const WasmEdge_ProgramOptionType_String: u32 = 12;

#[repr(C)]
pub struct WasmEdge_ProgramOption {
    pub Name: *const c_char,
    pub Description: *const c_char,
    pub Type: u32,
    pub Storage: *mut c_void,
    pub DefaultValue: *const c_void,
}

#[repr(C)]
pub struct WasmEdge_ModuleDescriptor {
    pub Name: *const c_char,
    pub Description: *const c_char,
    pub Create: Option<unsafe extern "C" fn(*const WasmEdge_ModuleDescriptor) -> *mut WasmEdge_ModuleInstanceContext>,
}

#[repr(C)]
pub struct WasmEdge_PluginVersionData {
    pub Major: u32,
    pub Minor: u32,
    pub Patch: u32,
    pub Build: u32,
}

#[repr(C)]
pub struct WasmEdge_PluginDescriptor {
    pub Name: *const c_char,
    pub Description: *const c_char,
    pub APIVersion: u32,
    pub Version: WasmEdge_PluginVersionData,
    pub ModuleCount: u32,
    pub ProgramOptionCount: u32,
    pub ModuleDescriptions: *mut WasmEdge_ModuleDescriptor,
    pub ProgramOptions: *mut WasmEdge_ProgramOption,
}

// Not linked at build time: the symbols stay undefined in the plugin and bind, when WasmEdge
// loads it, to the libwasmedge already in the process.
extern "C" {
    pub fn WasmEdge_VersionGetMajor() -> u32;
    pub fn WasmEdge_VersionGetMinor() -> u32;
    pub fn WasmEdge_VersionGetPatch() -> u32;
    pub fn WasmEdge_ValTypeGenI32() -> WasmEdge_ValType;
    pub fn WasmEdge_ValueGenI32(v: i32) -> WasmEdge_Value;
    pub fn WasmEdge_ValueGetI32(v: WasmEdge_Value) -> i32;
    pub fn WasmEdge_FunctionTypeCreate(
        params: *const WasmEdge_ValType,
        param_len: u32,
        returns: *const WasmEdge_ValType,
        return_len: u32,
    ) -> *mut WasmEdge_FunctionTypeContext;
    pub fn WasmEdge_FunctionTypeDelete(cxt: *mut WasmEdge_FunctionTypeContext);
    pub fn WasmEdge_FunctionInstanceCreate(
        ty: *const WasmEdge_FunctionTypeContext,
        func: Option<WasmEdge_HostFunc_t>,
        data: *mut c_void,
        cost: u64,
    ) -> *mut WasmEdge_FunctionInstanceContext;
    /// `finalizer(data)` runs when WasmEdge deletes the instance.
    pub fn WasmEdge_ModuleInstanceCreateWithData(
        name: WasmEdge_String,
        data: *mut c_void,
        finalizer: Option<unsafe extern "C" fn(*mut c_void)>,
    ) -> *mut WasmEdge_ModuleInstanceContext;
    pub fn WasmEdge_ModuleInstanceAddFunction(
        cxt: *mut WasmEdge_ModuleInstanceContext,
        name: WasmEdge_String,
        func: *mut WasmEdge_FunctionInstanceContext,
    );
    pub fn WasmEdge_CallingFrameGetMemoryInstance(
        frame: *const WasmEdge_CallingFrameContext,
        index: u32,
    ) -> *mut WasmEdge_MemoryInstanceContext;
    pub fn WasmEdge_MemoryInstanceGetPageSize(cxt: *const WasmEdge_MemoryInstanceContext) -> u32;
    /// Null when `[offset, offset + length)` is outside the memory. The offset and length
    /// are u32 in 0.14 and u64 in 0.17; passing u64 works with both on x86-64 and AArch64
    /// (arguments travel in 64-bit registers and the upper half is zero).
    pub fn WasmEdge_MemoryInstanceGetPointer(
        cxt: *mut WasmEdge_MemoryInstanceContext,
        offset: u64,
        length: u64,
    ) -> *mut u8;
}

/// A WasmEdge_String view of a Rust string (WasmEdge copies what it keeps).
pub fn wasmedge_str(s: &str) -> WasmEdge_String {
    WasmEdge_String { Length: s.len() as u32, Buf: s.as_ptr().cast() }
}
