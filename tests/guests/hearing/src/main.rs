//! Whisper through WASI-NN, printing `label: value` lines for the tests.
//!
//!     hearing.wasm probe ASR DIR MODEL OUTSIDE   the ways to give audio and models, right and wrong
//!     hearing.wasm rounds ASR LLM DIR N  speech and text models in one process, N rounds,
//!                                         each ending with its graphs unloaded; the memory
//!                                         use after each round's work and after its release
//!
//! ASR is a preloaded Whisper model, LLM a preloaded GGUF chat model, DIR the folder of the
//! speech samples, MODEL the Whisper model's path (for `load`), OUTSIDE an existing host file
//! outside the guest's folders. `rounds` reads the host's memory use from /hostproc/status when the host
//! maps its /proc/self there (`--dir /hostproc:/proc/self`).

use wasmedge_wasi_nn::{
    BackendError, Error, ExecutionTarget, Graph, GraphBuilder, GraphEncoding, GraphExecutionContext, TensorType,
};

fn code<T>(r: Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(Error::BackendError(e)) => format!("{e:?}"),
        Err(e) => format!("{e}"),
    }
}

fn output(ctx: &GraphExecutionContext) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    let n = ctx.get_output(0, &mut buf).expect("get_output");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn load(name: &str, encoding: GraphEncoding) -> Graph {
    GraphBuilder::new(encoding, ExecutionTarget::AUTO).build_from_cache(name).expect("load_by_name")
}

/// Transcribe WAV (or raw) bytes given as `ty`; the transcript or the error code.
fn transcribe(ctx: &mut GraphExecutionContext, ty: TensorType, bytes: &[u8]) -> Result<String, Error> {
    ctx.set_input(0, ty, &[1, bytes.len()], bytes)?;
    ctx.compute()?;
    Ok(output(ctx))
}

fn show(r: Result<String, Error>) -> String {
    match r {
        Ok(text) => format!("{text:?}"),
        Err(e) => code::<()>(Err(e)),
    }
}

/// A WAV file with `n` silent 16-bit samples.
fn silent_wav(n: u32) -> Vec<u8> {
    let data = n * 2;
    let mut w = Vec::new();
    w.extend(b"RIFF");
    w.extend((36 + data).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(16u32.to_le_bytes());
    w.extend(1u16.to_le_bytes()); // PCM
    w.extend(1u16.to_le_bytes()); // mono
    w.extend(16_000u32.to_le_bytes());
    w.extend(32_000u32.to_le_bytes());
    w.extend(2u16.to_le_bytes());
    w.extend(16u16.to_le_bytes());
    w.extend(b"data");
    w.extend(data.to_le_bytes());
    w.resize(w.len() + data as usize, 0);
    w
}

/// The samples of a 16-bit mono WAV file with a plain 44-byte header, as f32 bytes.
fn raw_f32(wav: &[u8]) -> Vec<u8> {
    wav[44..].chunks_exact(2).flat_map(|s| (i16::from_le_bytes([s[0], s[1]]) as f32 / 32768.0).to_le_bytes()).collect()
}

fn probe(asr: &str, dir: &str, model_path: &str, outside: &str) {
    let file = |f: &str| std::fs::read(format!("{dir}/{f}")).unwrap_or_else(|e| panic!("{f}: {e}"));
    let graph = load(asr, GraphEncoding::Whisper);
    let mut ctx = graph.init_execution_context().unwrap();
    let door = file("door.wav");
    println!("door: {}", show(transcribe(&mut ctx, TensorType::F32, &door)));
    println!("door_u8_tensor: {}", show(transcribe(&mut ctx, TensorType::U8, &door)));
    println!("door_raw_f32: {}", show(transcribe(&mut ctx, TensorType::F32, &raw_f32(&door))));
    for variant in ["door-8k", "door-22k", "door-44k", "door-stereo", "door-f32"] {
        println!("{variant}: {}", show(transcribe(&mut ctx, TensorType::F32, &file(&format!("{variant}.wav")))));
    }

    // Streaming: segment by segment, then the same with compute.
    let long = file("long.wav");
    ctx.set_input(0, TensorType::F32, &[1, long.len()], &long).unwrap();
    let mut segments = Vec::new();
    let mut buf = vec![0u8; 4096];
    let end = loop {
        match ctx.compute_single() {
            Ok(()) => {
                let n = ctx.get_output_single(0, &mut buf).unwrap();
                segments.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            Err(e) => break code::<()>(Err(e)),
        }
    };
    // An ended stream stays ended (it does not start the transcription again).
    let again = code(ctx.compute_single());
    ctx.fini_single().unwrap();
    println!("stream_end: {end}");
    println!("stream_end_again: {again}");
    println!("stream_segments: {}", segments.len());
    println!("stream_joined: {:?}", segments.concat());
    println!("long_compute: {}", show(transcribe(&mut ctx, TensorType::F32, &long)));
    // A stream stopped after its first segment, then the context used again.
    ctx.set_input(0, TensorType::F32, &[1, long.len()], &long).unwrap();
    println!("first_segment: {}", code(ctx.compute_single()));
    println!("fini_single: {}", code(ctx.fini_single()));
    println!("after_fini: {}", show(transcribe(&mut ctx, TensorType::F32, &door)));

    // Settings through metadata.
    ctx.set_input(1, TensorType::U8, &[1], br#"{"no-timestamps": true}"#).unwrap();
    println!("no_timestamps: {}", show(transcribe(&mut ctx, TensorType::F32, &door)));
    ctx.set_input(1, TensorType::U8, &[1], br#"{"beam-size": 1}"#).unwrap();
    println!("greedy: {}", show(transcribe(&mut ctx, TensorType::F32, &door)));

    // The wrong ways.
    let mut bad = graph.init_execution_context().unwrap();
    println!("compute_without_audio: {}", code(bad.compute()));
    println!("not_wav: {}", show(transcribe(&mut bad, TensorType::U8, b"this is not a sound file at all")));
    println!("not_whole_f32: {}", show(transcribe(&mut bad, TensorType::F32, &[0, 0, 128, 63, 7])));
    println!("truncated_wav: {}", show(transcribe(&mut bad, TensorType::F32, &door[..door.len() / 2 + 1])));
    println!("header_only_wav: {}", show(transcribe(&mut bad, TensorType::F32, &door[..30])));
    println!("empty_wav: {}", show(transcribe(&mut bad, TensorType::F32, &silent_wav(0))));
    println!("empty_raw: {}", show(transcribe(&mut bad, TensorType::F32, &[])));
    println!("unparsable_metadata: {}", code(bad.set_input(1, TensorType::U8, &[1], b"{nope")));
    bad.set_input(1, TensorType::U8, &[1], br#"{"language": "xx"}"#).unwrap();
    println!("unknown_language: {}", code(transcribe(&mut bad, TensorType::F32, &door)));
    // tiny.en is English-only: another language is English there (as WasmEdge's plugin).
    bad.set_input(1, TensorType::U8, &[1], br#"{"language": "de", "translate": true}"#).unwrap();
    println!("german_on_english_model: {}", show(transcribe(&mut bad, TensorType::F32, &door)));
    // The host still answers.
    println!("alive: {}", show(transcribe(&mut ctx, TensorType::F32, &door)));

    // `load` with the model's bytes, with its path, and with a path outside the guest's folders.
    let by = |encoding: GraphEncoding, builder: &[u8]| -> Result<String, Error> {
        let graph = GraphBuilder::new(encoding, ExecutionTarget::CPU).build_from_bytes([builder])?;
        let mut ctx = graph.init_execution_context()?;
        transcribe(&mut ctx, TensorType::F32, &door)
    };
    let model = std::fs::read(model_path).expect("the model file");
    println!("load_bytes: {}", show(by(GraphEncoding::Whisper, &model)));
    println!("load_bytes_autodetect: {}", show(by(GraphEncoding::Autodetec, &model)));
    println!("load_path: {}", show(by(GraphEncoding::Whisper, model_path.as_bytes())));
    println!("load_outside_path: {}", show(by(GraphEncoding::Whisper, outside.as_bytes())));
    println!("load_not_a_model: {}", show(by(GraphEncoding::Whisper, &door)));
}

/// Ask the chat model about `text`; its answer.
fn ask(ctx: &mut GraphExecutionContext, text: &str) -> String {
    let prompt = format!(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nRepeat this sentence: {}<|im_end|>\n<|im_start|>assistant\n",
        text.trim()
    );
    ctx.set_input(0, TensorType::U8, &[1], prompt.as_bytes()).unwrap();
    ctx.compute().expect("compute");
    output(ctx)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/hostproc/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().unwrap()))
        })
        .unwrap_or(0)
}

fn rounds(asr: &str, llm: &str, dir: &str, n: usize) {
    let wav = |f: &str| std::fs::read(format!("{dir}/{f}")).unwrap();
    let (door, paris) = (wav("door.wav"), wav("paris.wav"));
    for round in 1..=n {
        // Each round takes its graphs and contexts anew and gives them back at its end.
        let whisper = load(asr, GraphEncoding::Whisper);
        let chat = GraphBuilder::new(GraphEncoding::Ggml, ExecutionTarget::AUTO)
            .config(r#"{"temp": 0, "n-predict": 24, "ctx-size": 512}"#.to_string())
            .build_from_cache(llm)
            .expect("load the chat model");
        let mut hear = whisper.init_execution_context().unwrap();
        let mut speak = chat.init_execution_context().unwrap();
        // Speech, then text from the transcript.
        let heard = transcribe(&mut hear, TensorType::F32, &door).expect("transcribe");
        let said = ask(&mut speak, heard.split("] ").last().unwrap_or(&heard));
        // And the other way round: text first, then speech.
        let answer = ask(&mut speak, "What is the capital of France?");
        let heard_after = transcribe(&mut hear, TensorType::F32, &paris).expect("transcribe");
        println!("round {round}: {}", serde_like(&[&heard, &said, &answer, &heard_after]));
        println!("rss {round}: {}", rss_kib());
        // The explicit release point: unloading a graph drops its contexts (whisper states,
        // llama.cpp sequences) and the host hands what they freed back to the system before
        // it returns. The preloaded models themselves stay loaded for the next round.
        whisper.unload().expect("unload the Whisper graph");
        chat.unload().expect("unload the chat graph");
        println!("rss released {round}: {}", rss_kib());
    }
}

/// The strings as a JSON list (no serde in this guest).
fn serde_like(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("probe") => probe(&args[2], &args[3], &args[4], &args[5]),
        Some("rounds") => rounds(&args[2], &args[3], &args[4], args[5].parse().unwrap()),
        _ => panic!("usage: probe ASR DIR MODEL OUTSIDE | rounds ASR LLM DIR N"),
    }
    let _ = BackendError::EndOfSequence;
}
