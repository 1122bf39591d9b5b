//! The numbers and memory layouts of the `wasi_ephemeral_nn` ABI, as existing guests use
//! them (see the README's ABI section). Nothing here knows about WasmEdge or llama.cpp: the
//! guest's memory is reached through the [`GuestMemory`] trait.

use crate::error::{NnError, NnResult};

/// Error codes returned to the guest (the i32 result of every host function).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    Success = 0,
    InvalidArgument = 1,
    InvalidEncoding = 2,
    MissingMemory = 3,
    Busy = 4,
    RuntimeError = 5,
    UnsupportedOperation = 6,
    TooLarge = 7,
    NotFound = 8,
    EndOfSequence = 100,
    ContextFull = 101,
    PromptTooLong = 102,
    ModelNotFound = 103,
}

/// An enum numbered in declaration order, with the lower-case name guests and the command
/// line use for each variant: one list, so numbers and names cannot drift apart.
macro_rules! numbered {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),* }

        impl $name {
            const ALL: &'static [($name, &'static str)] = &[$(($name::$variant, $text)),*];

            pub fn from_u32(n: u32) -> Option<Self> {
                Self::ALL.get(n as usize).map(|(v, _)| *v)
            }

            /// Case-insensitive name, as written in `--nn-preload` (`GGML`, `AUTO`...).
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(v, _)| *v)
            }

            pub fn name(self) -> &'static str {
                Self::ALL[self as usize].1
            }
        }
    };
}

numbered!(
    /// Graph encodings, numbered as in WasmEdge's WASI-NN.
    GraphEncoding {
        Openvino = "openvino",
        Onnx = "onnx",
        Tensorflow = "tensorflow",
        Pytorch = "pytorch",
        TensorflowLite = "tensorflowlite",
        Autodetect = "autodetect",
        Ggml = "ggml",
        NeuralSpeed = "neuralspeed",
        Burn = "burn",
        Whisper = "whisper",
        Mlx = "mlx",
        Piper = "piper",
        ChatTts = "chattts",
        OpenvinoGenAi = "openvinogenai",
        Bitnet = "bitnet",
    }
);

numbered!(
    /// Execution targets.
    ExecutionTarget { Cpu = "cpu", Gpu = "gpu", Tpu = "tpu", Auto = "auto" }
);

/// Tensor element types. Only the low byte of the guest's `type` field is meaningful: the
/// guest crate's low-level layer writes a u8 followed by padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F16,
    F32,
    F64,
    U8,
    I32,
    I64,
}

impl TensorType {
    pub fn from_raw(raw: u32) -> Option<Self> {
        use TensorType::*;
        [F16, F32, F64, U8, I32, I64].get((raw & 0xff) as usize).copied()
    }
}

/// A tensor as the guest passed it: its data is borrowed straight from guest memory (the
/// guest is suspended for the whole host call), so a backend copies only what it keeps.
#[derive(Debug)]
pub struct Tensor<'a> {
    pub dims: Vec<u32>,
    pub ty: TensorType,
    pub data: &'a [u8],
}

/// Bounds-checked access to the calling guest's linear memory. Every method fails with
/// InvalidArgument when `[offset, offset + len)` is not inside the memory.
pub trait GuestMemory {
    /// Borrow `len` bytes at `offset`.
    fn bytes(&self, offset: u32, len: u32) -> NnResult<&[u8]>;
    /// Copy `data` to `offset`.
    fn write(&mut self, offset: u32, data: &[u8]) -> NnResult<()>;

    fn read_u32(&self, offset: u32) -> NnResult<u32> {
        let b = self.bytes(offset, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn write_u32(&mut self, offset: u32, value: u32) -> NnResult<()> {
        self.write(offset, &value.to_le_bytes())
    }

    /// A UTF-8 string (names of preloaded models).
    fn str(&self, offset: u32, len: u32, what: &str) -> NnResult<&str> {
        std::str::from_utf8(self.bytes(offset, len)?)
            .map_err(|_| NnError::invalid_argument(format!("{what} is not valid UTF-8")))
    }

    /// The `builders` array of `load`: `count` entries of `{u32 ptr, u32 len}`, each a byte
    /// buffer. Returns borrowed slices, validated before anything is copied.
    fn builders(&self, offset: u32, count: u32) -> NnResult<Vec<&[u8]>> {
        let table_len = count
            .checked_mul(8)
            .ok_or_else(|| NnError::invalid_argument(format!("builder count {count} is too large")))?;
        let table = self.bytes(offset, table_len)?;
        table
            .chunks_exact(8)
            .map(|e| {
                let ptr = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                let len = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
                self.bytes(ptr, len)
            })
            .collect()
    }

    /// The 20-byte tensor struct `{dims_ptr, dims_len, type, data_ptr, data_len}`.
    fn tensor(&self, offset: u32) -> NnResult<Tensor<'_>> {
        let f = |i: u32| self.read_u32(offset.wrapping_add(i * 4));
        // Check the struct as a whole first, so a wrapping offset cannot read elsewhere.
        self.bytes(offset, 20)?;
        let (dims_ptr, dims_len, raw_type, data_ptr, data_len) = (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?);
        let dims_bytes = dims_len
            .checked_mul(4)
            .ok_or_else(|| NnError::invalid_argument(format!("tensor has {dims_len} dimensions")))?;
        let dims = self
            .bytes(dims_ptr, dims_bytes)?
            .chunks_exact(4)
            .map(|d| u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
            .collect();
        let ty = match TensorType::from_raw(raw_type) {
            Some(ty @ (TensorType::F16 | TensorType::F32 | TensorType::U8 | TensorType::I32)) => ty,
            Some(ty) => return Err(NnError::invalid_argument(format!("tensor type {ty:?} is not supported"))),
            None => return Err(NnError::invalid_argument(format!("unknown tensor type {}", raw_type & 0xff))),
        };
        crate::limits::check_input(data_len as u64)?;
        let data = self.bytes(data_ptr, data_len)?;
        Ok(Tensor { dims, ty, data })
    }
}

/// Where `len` bytes at `offset` lie in a guest memory of `size` bytes: `None` for an empty
/// range, which is valid at any offset (guests pass dangling pointers with empty buffers),
/// InvalidArgument when the range does not fit.
pub fn range(offset: u32, len: u32, size: u64) -> NnResult<Option<std::ops::Range<usize>>> {
    if len == 0 {
        return Ok(None);
    }
    let end = u64::from(offset) + u64::from(len);
    if end > size {
        return Err(NnError::out_of_bounds(offset, len));
    }
    Ok(Some(offset as usize..end as usize))
}

/// Guest memory backed by a plain buffer, with the same rule as WasmEdge's ([`range`]): for
/// unit tests and the fuzz targets.
pub struct BufferMemory(pub Vec<u8>);

impl GuestMemory for BufferMemory {
    fn bytes(&self, offset: u32, len: u32) -> NnResult<&[u8]> {
        Ok(range(offset, len, self.0.len() as u64)?.map_or(&[][..], |r| &self.0[r]))
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> NnResult<()> {
        let len = u32::try_from(data.len()).map_err(|_| NnError::out_of_bounds(offset, u32::MAX))?;
        if let Some(r) = range(offset, len, self.0.len() as u64)? {
            self.0[r].copy_from_slice(data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem_with(words: &[(u32, u32)]) -> BufferMemory {
        let mut m = BufferMemory(vec![0; 256]);
        for &(at, v) in words {
            m.write_u32(at, v).unwrap();
        }
        m
    }

    #[test]
    fn tensor_decodes_and_masks_type_padding() {
        // dims at 64 = [1, 3]; data at 96 = "abc"; type U8 with garbage padding bytes.
        let mut m = mem_with(&[(0, 64), (4, 2), (8, 0xdead_0003), (12, 96), (16, 3), (64, 1), (68, 3)]);
        m.write(96, b"abc").unwrap();
        let t = m.tensor(0).unwrap();
        assert_eq!((t.dims, t.ty, t.data), (vec![1, 3], TensorType::U8, &b"abc"[..]));
    }

    #[test]
    fn tensor_f64_and_i64_are_refused() {
        for ty in [2, 5, 6] {
            let m = mem_with(&[(0, 64), (4, 1), (8, ty), (12, 96), (16, 1), (64, 1)]);
            assert_eq!(m.tensor(0).unwrap_err().errno, Errno::InvalidArgument, "type {ty}");
        }
    }

    #[test]
    fn tensor_out_of_bounds_is_invalid_argument() {
        let m = mem_with(&[(0, 64), (4, 1), (8, 3), (12, 250), (16, 100)]);
        assert_eq!(m.tensor(0).unwrap_err().errno, Errno::InvalidArgument);
        assert_eq!(m.tensor(240).unwrap_err().errno, Errno::InvalidArgument);
        let huge_dims = mem_with(&[(0, 64), (4, u32::MAX), (8, 3), (12, 0), (16, 0)]);
        assert_eq!(huge_dims.tensor(0).unwrap_err().errno, Errno::InvalidArgument);
    }

    #[test]
    fn builders_are_bounds_checked() {
        let m = mem_with(&[(0, 100), (4, 10), (8, 200), (12, 56)]);
        let b = m.builders(0, 2).unwrap();
        assert_eq!((b[0].len(), b[1].len()), (10, 56));
        let bad = mem_with(&[(0, 250), (4, 10)]);
        assert!(bad.builders(0, 1).is_err());
        assert!(m.builders(0, u32::MAX).is_err());
    }

    #[test]
    fn encodings_by_number_and_name() {
        assert_eq!(GraphEncoding::from_u32(6), Some(GraphEncoding::Ggml));
        assert_eq!(GraphEncoding::from_u32(9), Some(GraphEncoding::Whisper));
        assert_eq!(GraphEncoding::from_u32(15), None);
        assert_eq!(GraphEncoding::from_name("GGML"), Some(GraphEncoding::Ggml));
        assert_eq!(GraphEncoding::from_name("Whisper"), Some(GraphEncoding::Whisper));
        assert_eq!(ExecutionTarget::from_name("AUTO"), Some(ExecutionTarget::Auto));
        assert_eq!(TensorType::from_raw(5), Some(TensorType::I64));
        assert_eq!(TensorType::from_raw(6), None);
    }
}
