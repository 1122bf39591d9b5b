//! Audio a guest gives, as whisper.cpp wants it: 16 kHz mono f32 samples.
//!
//! Two forms are accepted, told apart by their first bytes:
//! - a RIFF/WAVE file (`RIFF....WAVE`): 8/16/24/32-bit integer PCM or 32-bit float, any number
//!   of channels (averaged to mono), any sample rate (resampled to 16 kHz), whatever the tensor
//!   type says (guests written for WasmEdge's plugin pass WAV bytes as F32);
//! - anything else in an F32 tensor: raw little-endian f32 samples, already 16 kHz mono. (Raw
//!   samples cannot start with `RIFF`: as an f32 that is about 12,000, far outside [-1, 1].)

use crate::abi::{Tensor, TensorType};
use crate::error::{NnError, NnResult};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

pub const SAMPLE_RATE: u32 = 16_000;

fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

/// The samples in a tensor (see the module's notes).
pub fn samples(tensor: &Tensor<'_>) -> NnResult<Vec<f32>> {
    let samples = if is_wav(tensor.data) {
        wav(tensor.data)?
    } else if tensor.ty == TensorType::F32 {
        if tensor.data.len() % 4 != 0 {
            return Err(NnError::invalid_argument(format!(
                "raw audio must be little-endian f32 samples, but {} bytes is not a whole number of them",
                tensor.data.len()
            )));
        }
        tensor.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    } else {
        return Err(NnError::invalid_argument(
            "the audio is not a WAV file (it does not start with RIFF....WAVE); give WAV bytes, or raw 16 kHz mono \
             f32 samples as an F32 tensor",
        ));
    };
    if samples.is_empty() {
        return Err(NnError::invalid_argument("the audio has no samples"));
    }
    if let Some(bad) = samples.iter().position(|s| !s.is_finite()) {
        return Err(NnError::invalid_argument(format!("audio sample {bad} is not a finite number")));
    }
    Ok(samples)
}

fn bad_wav(e: impl std::fmt::Display) -> NnError {
    NnError::invalid_argument(format!("the WAV file cannot be read ({e}); give RIFF/WAVE PCM or float audio"))
}

/// Decode a WAV file to 16 kHz mono.
fn wav(bytes: &[u8]) -> NnResult<Vec<f32>> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(bad_wav)?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(bad_wav("no channels or a zero sample rate"));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().collect::<Result<_, _>>().map_err(bad_wav)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(bad_wav)?
        }
    };
    let channels = spec.channels as usize;
    let mono: Vec<f32> = if channels == 1 {
        interleaved
    } else {
        interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect()
    };
    resample(mono, spec.sample_rate)
}

/// Resample mono audio to 16 kHz (band-limited, FFT-based; rubato).
fn resample(mono: Vec<f32>, rate: u32) -> NnResult<Vec<f32>> {
    if rate == SAMPLE_RATE || mono.is_empty() {
        return Ok(mono);
    }
    let failed =
        |e: &dyn std::fmt::Display| NnError::runtime(format!("cannot resample {rate} Hz audio to 16 kHz: {e}"));
    let mut resampler =
        Fft::<f32>::new(rate as usize, SAMPLE_RATE as usize, 1024, 1, FixedSync::Both).map_err(|e| failed(&e))?;
    let input = InterleavedSlice::new(&mono[..], 1, mono.len()).map_err(|e| failed(&e))?;
    let output = resampler.process_all(&input, mono.len(), None).map_err(|e| failed(&e))?;
    Ok(output.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(spec: hound::WavSpec, frames: &[Vec<i32>]) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for frame in frames {
            for &s in frame {
                w.write_sample(s).unwrap();
            }
        }
        w.finalize().unwrap();
        cursor.into_inner()
    }

    fn tensor(ty: TensorType, data: &[u8]) -> Tensor<'_> {
        Tensor { dims: vec![1, data.len() as u32], ty, data }
    }

    fn spec(channels: u16, rate: u32) -> hound::WavSpec {
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int }
    }

    #[test]
    fn stereo_16_bit_is_mixed_down_and_scaled() {
        let bytes = wav_bytes(spec(2, 16_000), &[vec![16384, 0], vec![-32768, -32768]]);
        assert_eq!(samples(&tensor(TensorType::F32, &bytes)).unwrap(), vec![0.25, -1.0]);
    }

    #[test]
    fn other_rates_are_resampled_to_16k() {
        // One second of a 440 Hz tone at 44.1 kHz comes out as one second at 16 kHz.
        let frames: Vec<Vec<i32>> = (0..44_100)
            .map(|i| vec![((i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin() * 16000.0) as i32])
            .collect();
        let out = samples(&tensor(TensorType::U8, &wav_bytes(spec(1, 44_100), &frames))).unwrap();
        assert!((out.len() as i64 - 16_000).abs() <= 2, "{} samples", out.len());
        let peak = out.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 16000.0 / 32768.0).abs() < 0.02, "peak {peak}");
    }

    #[test]
    fn raw_f32_needs_an_f32_tensor_and_whole_samples() {
        let raw: Vec<u8> = [0.5f32, -0.25].iter().flat_map(|s| s.to_le_bytes()).collect();
        assert_eq!(samples(&tensor(TensorType::F32, &raw)).unwrap(), vec![0.5, -0.25]);
        assert!(samples(&tensor(TensorType::U8, &raw)).is_err());
        assert!(samples(&tensor(TensorType::F32, &raw[..5])).is_err());
    }

    #[test]
    fn broken_and_empty_audio_is_refused() {
        let good = wav_bytes(spec(1, 16_000), &[vec![1], vec![2], vec![3]]);
        let truncated = good[..good.len() - 3].to_vec();
        let empty = wav_bytes(spec(1, 16_000), &[]);
        for (what, bytes) in [("truncated", truncated), ("empty", empty), ("header only", good[..12].to_vec())] {
            let e = samples(&tensor(TensorType::F32, &bytes)).unwrap_err();
            assert_eq!(e.errno, crate::abi::Errno::InvalidArgument, "{what}");
        }
        assert!(samples(&tensor(TensorType::F32, &[])).is_err());
    }
}
