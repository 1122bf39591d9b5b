//! The `wasi_ephemeral_nn` imports as they are (see ABI.md), for test guests that must pass
//! what the guest crate never would: bad pointers, stale handles, calls out of order.

#[link(wasm_import_module = "wasi_ephemeral_nn")]
extern "C" {
    pub fn load(builders: *const Buf, count: u32, encoding: u32, target: u32, graph: *mut u32) -> u32;
    pub fn load_by_name(name: *const u8, len: u32, graph: *mut u32) -> u32;
    pub fn load_by_name_with_config(
        name: *const u8,
        len: u32,
        config: *const u8,
        config_len: u32,
        graph: *mut u32,
    ) -> u32;
    pub fn init_execution_context(graph: u32, ctx: *mut u32) -> u32;
    pub fn set_input(ctx: u32, index: u32, tensor: *const Tensor) -> u32;
    pub fn compute(ctx: u32) -> u32;
    pub fn get_output(ctx: u32, index: u32, buf: *mut u8, max: u32, written: *mut u32) -> u32;
    pub fn compute_single(ctx: u32) -> u32;
    pub fn get_output_single(ctx: u32, index: u32, buf: *mut u8, max: u32, written: *mut u32) -> u32;
    pub fn fini_single(ctx: u32) -> u32;
    pub fn finalize_execution_context(ctx: u32) -> u32;
    pub fn unload(graph: u32) -> u32;
}

#[repr(C)]
pub struct Tensor {
    pub dims: *const u32,
    pub dims_len: u32,
    pub ty: u32,
    pub data: *const u8,
    pub data_len: u32,
}

/// One entry of `load`'s builder array.
#[repr(C)]
pub struct Buf {
    pub ptr: *const u8,
    pub len: u32,
}

pub const U8: u32 = 3;
pub const ONNX: u32 = 1;
pub const AUTODETECT: u32 = 5;
pub const GGML: u32 = 6;
pub const WHISPER: u32 = 9;
pub const CPU: u32 = 0;
static DIMS: [u32; 1] = [1];

/// A U8 tensor `[1]` over `data` (how guests pass prompts and metadata).
pub fn tensor(data: &[u8]) -> Tensor {
    Tensor { dims: DIMS.as_ptr(), dims_len: 1, ty: U8, data: data.as_ptr(), data_len: data.len() as u32 }
}

/// One builder over `bytes`.
pub fn buf(bytes: &[u8]) -> Buf {
    Buf { ptr: bytes.as_ptr(), len: bytes.len() as u32 }
}

/// One whole computation on `graph`, every call required to succeed: init → metadata → input
/// → compute → get_output → finalize. Returns output 0.
pub fn run_once(graph: u32, meta: &[u8], input: &[u8]) -> Vec<u8> {
    let (mut c, mut n) = (0, 0);
    let mut out = vec![0u8; 8192];
    unsafe {
        assert_eq!(init_execution_context(graph, &mut c), 0, "init_execution_context");
        assert_eq!(set_input(c, 1, &tensor(meta)), 0, "metadata");
        assert_eq!(set_input(c, 0, &tensor(input)), 0, "input");
        assert_eq!(compute(c), 0, "compute");
        assert_eq!(get_output(c, 0, out.as_mut_ptr(), out.len() as u32, &mut n), 0, "get_output");
        assert_eq!(finalize_execution_context(c), 0, "finalize_execution_context");
    }
    out.truncate(n as usize);
    out
}
