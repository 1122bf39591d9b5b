//! The decoding of guest memory that every host function starts with — the 20-byte tensor
//! struct, `load`'s builder table, names, u32 out-parameters — against an independent
//! reading of the same bytes: it must accept exactly the well-formed, in-bounds arguments
//! and return exactly the bytes they point at.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmedge_nn_plugin::abi::{BufferMemory, Errno, GuestMemory, TensorType};

#[derive(Arbitrary, Debug)]
enum Op {
    Tensor(u32),
    Builders(u32, u32),
    Str(u32, u32),
    ReadU32(u32),
    Write(u32, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    memory: Vec<u8>,
    /// Pointers are taken modulo the memory's size plus this slack, so most land inside or
    /// just past the end.
    slack: u16,
    ops: Vec<Op>,
}

/// `len` bytes at `at`, by plain slicing with wide arithmetic; an empty range is valid
/// anywhere (the ABI's rule: guests pass dangling pointers with empty buffers).
fn slice(m: &[u8], at: u32, len: u64) -> Option<&[u8]> {
    if len == 0 {
        return Some(&[]);
    }
    let end = at as u64 + len;
    (end <= m.len() as u64).then(|| &m[at as usize..end as usize])
}

fn word(m: &[u8], at: u64) -> Option<u32> {
    let at = u32::try_from(at).ok()?;
    slice(m, at, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()))
}

fuzz_target!(|input: Input| {
    let mut mem = BufferMemory(input.memory);
    mem.0.truncate(1 << 16);
    let span = mem.0.len() as u64 + input.slack as u64 + 1;
    let fit = |p: u32| if p & 0x8000_0000 != 0 { p } else { (p as u64 % span) as u32 };

    for op in input.ops.iter().take(32) {
        let m = mem.0.clone();
        match *op {
            Op::Tensor(at) => {
                let at = fit(at);
                let got = mem.tensor(at);
                // {dims_ptr, dims_len, type, data_ptr, data_len}, read independently.
                let expected = (|| {
                    let f: Vec<u32> = (0..5).map(|i| word(&m, at as u64 + 4 * i)).collect::<Option<_>>()?;
                    let dims = slice(&m, f[0], 4 * f[1] as u64)?;
                    let ty = match f[2] & 0xff {
                        0 => TensorType::F16,
                        1 => TensorType::F32,
                        3 => TensorType::U8,
                        4 => TensorType::I32,
                        _ => return None,
                    };
                    let data = slice(&m, f[3], f[4] as u64)?;
                    let dims: Vec<u32> = dims.chunks(4).map(|d| u32::from_le_bytes(d.try_into().unwrap())).collect();
                    Some((dims, ty, data))
                })();
                match (got, expected) {
                    (Ok(t), Some(e)) => assert_eq!((t.dims, t.ty, t.data), e),
                    (Err(err), None) => {
                        assert!(matches!(err.errno, Errno::InvalidArgument | Errno::TooLarge), "{}", err.message)
                    }
                    (got, expected) => panic!("tensor at {at}: decoded {got:?}, expected {expected:?}"),
                }
            }
            Op::Builders(at, count) => {
                let (at, count) = (fit(at), count % 64);
                let got = mem.builders(at, count);
                let expected = (0..count as u64)
                    .map(|i| slice(&m, word(&m, at as u64 + 8 * i)?, word(&m, at as u64 + 8 * i + 4)? as u64))
                    .collect::<Option<Vec<_>>>();
                match (got, expected) {
                    (Ok(b), Some(e)) => assert_eq!(b, e),
                    (Err(err), None) => assert_eq!(err.errno, Errno::InvalidArgument),
                    (got, expected) => panic!("builders at {at}×{count}: {got:?} vs {expected:?}"),
                }
            }
            Op::Str(at, len) => {
                let (at, len) = (fit(at), fit(len));
                let expected = slice(&m, at, len as u64).and_then(|b| std::str::from_utf8(b).ok());
                assert_eq!(mem.str(at, len, "a name").ok(), expected);
            }
            Op::ReadU32(at) => {
                let at = fit(at);
                assert_eq!(mem.read_u32(at).ok(), word(&m, at as u64));
            }
            Op::Write(at, ref data) => {
                let at = fit(at);
                let fits = slice(&m, at, data.len() as u64).is_some();
                assert_eq!(mem.write(at, data).is_ok(), fits);
                if fits {
                    assert!(data.is_empty() || mem.0[at as usize..at as usize + data.len()] == data[..]);
                } else {
                    assert!(mem.0 == m, "a refused write changed memory");
                }
            }
        }
    }
});
