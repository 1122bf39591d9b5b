//! Transcribe a 16 kHz mono 16-bit WAV file with whisper-rs, written the plain way (as
//! whisper-rs's own example does) and independent of the plugin's code, printing one
//! `[hh:mm:ss.mmm --> hh:mm:ss.mmm]  text` line per segment, as WasmEdge's plugin does.
//!
//!     whisper-native MODEL FILE.wav THREADS [BEAM_SIZE] [--time]
//!
//! With `--time` it also prints `full_ms: N` (the transcription, model load and state
//! creation excluded), `state_ms: N` (making the whisper state) and
//! `audio_ms: N` after the transcript, for the speed harness.
//!
//!     whisper-native --serve MODEL FILE.wav THREADS
//!
//! loads the model and reads the file once, then answers each `asr` line of stdin with
//! `transcribe_ms: N` (making a state and transcribing in it, as the plugin's `compute`
//! does) and `done`, until `quit`: the harness's paired measurements. (A state is not reused:
//! whisper.cpp carries timestamps from one transcription in a state to the next.)
//!
//! The settings are the plugin's defaults: English, beam search of 5 (or greedy with
//! BEAM_SIZE 1 and best-of 5), temperature 0.

use std::io::{BufRead, Write};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

fn stamp(t: i64) -> String {
    let ms = t * 10;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, (ms / 60_000) % 60, (ms / 1000) % 60, ms % 1000)
}

/// A new state, and `samples` transcribed in it; with the times of both, in ms.
fn transcribe(ctx: &WhisperContext, samples: &[f32], threads: i32, beam_size: i32) -> (WhisperState, f64, f64) {
    let state_started = std::time::Instant::now();
    let mut state = ctx.create_state().expect("state");
    let state_ms = state_started.elapsed().as_secs_f64() * 1e3;
    let strategy = if beam_size > 1 {
        SamplingStrategy::BeamSearch { beam_size, patience: -1.0 }
    } else {
        SamplingStrategy::Greedy { best_of: 5 }
    };
    let mut params = FullParams::new(strategy);
    params.set_language(Some("en"));
    params.set_n_threads(threads);
    params.set_temperature(0.0);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_special(false);
    params.set_print_timestamps(false);
    let started = std::time::Instant::now();
    state.full(params, samples).expect("transcribe");
    (state, state_ms, started.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let serve = args.get(1).is_some_and(|a| a == "--serve");
    if serve {
        args.remove(1);
    }
    let (model, file, threads) = (&args[1], &args[2], args[3].parse::<i32>().expect("THREADS"));
    let beam_size: i32 = args.get(4).filter(|a| *a != "--time").map_or(5, |b| b.parse().expect("BEAM_SIZE"));

    let mut reader = hound::WavReader::open(file).expect("a WAV file");
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (16_000, 1, 16), "16 kHz mono 16-bit only");
    let samples: Vec<f32> = reader.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();

    whisper_rs::install_logging_hooks();
    let ctx = WhisperContext::new_with_params(model, WhisperContextParameters::default()).expect("load the model");
    let mut out = std::io::stdout().lock();
    if serve {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            match line.trim() {
                "asr" => {
                    let (_, state_ms, full_ms) = transcribe(&ctx, &samples, threads, beam_size);
                    writeln!(out, "transcribe_ms: {:.3}\ndone", state_ms + full_ms).unwrap();
                    out.flush().unwrap();
                }
                "quit" => return,
                other => panic!("unknown command {other:?}"),
            }
        }
        return;
    }
    let (state, state_ms, full_ms) = transcribe(&ctx, &samples, threads, beam_size);
    for segment in state.as_iter() {
        let text = segment.to_str_lossy().expect("segment text");
        writeln!(out, "[{} --> {}] {}", stamp(segment.start_timestamp()), stamp(segment.end_timestamp()), text)
            .unwrap();
    }
    if args.iter().any(|a| a == "--time") {
        writeln!(out, "full_ms: {full_ms:.3}").unwrap();
        writeln!(out, "state_ms: {state_ms:.3}").unwrap();
        writeln!(out, "audio_ms: {:.3}", samples.len() as f64 / 16.0).unwrap();
    }
}
