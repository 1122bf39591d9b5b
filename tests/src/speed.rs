//! The speed harness: the same model, prompt, thread count and build measured natively and
//! through WasmEdge (guest interpreted and AOT-compiled). Two phases:
//!
//! - whole processes, the sides taking turns, for what only a process shows: model load,
//!   exec → first token, peak memory, cold start;
//! - paired measurements of speed: the three sides kept running side by side and asked in
//!   turns for the same measurement (prompt, streamed tokens, a whole generation, a Whisper
//!   transcription), so that each wasm figure has a native one taken seconds before or
//!   after it. On a shared machine the speed of one process drifts by 10–20% over seconds,
//!   which whole processes minutes apart cannot cancel out.
//!
//! Reports medians, ratios wasm/native (the median of each pair's ratio, with a 95%
//! confidence interval), and writes `speed.json`, `speed.md` and `speed.png` into the results
//! folder.
//!
//! Run in full by `scripts/bench.sh` (`cargo bench -p e2e --bench speed`); a quick form runs in
//! the tests (`tests/speed_harness.rs`), which checks that every figure is produced.

use crate::{
    ggml_preload, guest, model, plugin_dir, root, wasmedge_bin, wasmedge_command, SMOLLM2, SPEECH, WHISPER_TINY_EN,
};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The prompt (SmolLM2's ChatML), long enough that prompt speed means something.
pub const PROMPT: &str = "<|im_start|>system\nYou are a helpful assistant who answers in detail.<|im_end|>\n<|im_start|>user\nThe lighthouse keeper had lived alone on the rock for eleven years. Every evening he climbed the spiral stairs, trimmed the wick, polished the great lens and watched the ships pass far out at sea. Write a long story about the night a storm brought a stranger to his door, what they said to each other, and how the keeper's life changed afterwards.<|im_end|>\n<|im_start|>assistant\n";
/// The Whisper sample (17.8 s, five segments).
pub const SPEECH_SAMPLE: &str = "long.wav";

pub struct Config {
    /// Whole-process rounds (load, exec → first token, peak memory, cold start).
    pub runs: usize,
    /// Paired measurements of speed (prompt, decode, streaming, Whisper).
    pub pairs: usize,
    pub tokens: usize,
    pub threads: u32,
    pub out_dir: PathBuf,
    /// The native binaries: llama-native (this package) and whisper-native.
    pub llama_native: PathBuf,
    pub whisper_native: PathBuf,
}

/// One process run: its `label: value` lines, wall time, when it printed `first_token`, and
/// its peak resident memory.
struct Run {
    figures: Map<String, Value>,
    wall_ms: f64,
    first_token_ms: Option<f64>,
    peak_rss_kib: i64,
}

// The child is reaped by wait4 below, which clippy does not see.
#[allow(clippy::zombie_processes)]
fn run(mut cmd: Command) -> Run {
    cmd.current_dir(root()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (mut figures, mut first_token_ms) = (Map::new(), None);
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if line == "first_token" {
            first_token_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        } else if let Some((k, v)) = line.split_once(": ") {
            if let Ok(n) = v.trim().parse::<f64>() {
                figures.insert(k.to_string(), json!(n));
            }
        }
    }
    // wait4 rather than Child::wait: it also gives this child's own peak RSS.
    let (mut status, mut usage): (libc::c_int, libc::rusage) = (0, unsafe { std::mem::zeroed() });
    // SAFETY: waits for our own child, writing into the two locals.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let stderr = errors.join().unwrap_or_default();
    assert!(pid > 0 && std::process::ExitStatus::from_raw(status).success(), "{cmd:?} failed ({status}):\n{stderr}");
    Run { figures, wall_ms, first_token_ms, peak_rss_kib: usage.ru_maxrss }
}

fn wasmedge(preload: &str, wasm: &Path, args: &[&str]) -> Command {
    let mut cmd = wasmedge_command();
    cmd.env("WASMEDGE_PLUGIN_PATH", plugin_dir()).args(["--dir", ".:.", "--nn-preload", preload]).arg(wasm).args(args);
    cmd
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn get(r: &Run, k: &str) -> f64 {
    r.figures.get(k).and_then(Value::as_f64).unwrap_or_else(|| panic!("no figure '{k}' in {:?}", r.figures))
}

/// What a whole process shows: loading, exec → first token, peak memory.
fn process_figures(r: &Run) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("load_ms".into(), json!(get(r, "load_ms")));
    m.insert("exec_to_first_token_ms".into(), json!(r.first_token_ms.expect("a first_token line")));
    m.insert("peak_rss_mib".into(), json!(r.peak_rss_kib as f64 / 1024.0));
    m
}

/// Medians over runs, figure by figure.
fn medians(runs: &[Map<String, Value>]) -> Map<String, Value> {
    let mut out = Map::new();
    for k in runs[0].keys() {
        out.insert(k.clone(), json!(median(runs.iter().map(|r| r[k].as_f64().unwrap()).collect())));
    }
    out
}

pub const SIDES: [&str; 3] = ["native", "wasm_interpreted", "wasm_aot"];

/// A native binary, run with the C runtime `wasmedge` runs with. WasmEdge installed on
/// Debian 12 from Debian 13's packages brings its own libc and libstdc++ and runs under their
/// loader (`bin/trixie-run`, see scripts/install-wasmedge.sh); those alone made native decoding
/// about 6% faster here, so the native side runs under them too, or the comparison would
/// measure two C libraries instead of the plugin.
fn native_command(bin: &Path) -> Command {
    let runner = wasmedge_bin().with_file_name("trixie-run");
    if runner.is_file() {
        let mut c = Command::new(runner);
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// A side kept running for the paired measurements (`llama-native --serve`, the guest's
/// `serve-gen`, ...): it answers one command line at a time with `label: value` lines and
/// `done`, and sleeps in between.
struct Server {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    what: String,
}

impl Server {
    fn start(mut cmd: Command) -> Self {
        cmd.current_dir(root()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (stdin, stdout) = (child.stdin.take().unwrap(), BufReader::new(child.stdout.take().unwrap()));
        Server { child, stdin, stdout, what: format!("{cmd:?}") }
    }

    /// The figures `command` answers with.
    fn ask(&mut self, command: &str) -> Map<String, Value> {
        use std::io::Write;
        writeln!(self.stdin, "{command}").and_then(|()| self.stdin.flush()).unwrap_or_else(|e| {
            panic!("{} stopped before `{command}`: {e}", self.what);
        });
        let mut figures = Map::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap_or(0);
            assert!(n > 0, "{} stopped answering `{command}` (see its stderr above)", self.what);
            match line.trim_end().split_once(": ") {
                None if line.trim_end() == "done" => return figures,
                Some((k, v)) => {
                    let v: f64 = v.trim().parse().unwrap_or_else(|_| panic!("{}: not a number: {line}", self.what));
                    figures.insert(k.to_string(), json!(v));
                }
                None => panic!("{}: unexpected answer {line:?} to `{command}`", self.what),
            }
        }
    }

    fn quit(mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit");
        drop(self.stdin);
        let status = self.child.wait().expect("wait for a server");
        assert!(status.success(), "{} failed: {status}", self.what);
    }
}

/// Longer than OpenMP's helper threads spin after a computation before they sleep.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The paired measurements: the three sides kept running side by side, asked in turns
/// (the order rotating) for the same measurement, so each wasm figure has a native one
/// taken a second or two before or after it. Returns, per side, per command, each answer.
fn paired(servers: Vec<Server>, commands: &[&str], pairs: usize) -> Vec<Vec<Vec<Map<String, Value>>>> {
    let mut servers = servers;
    // One unrecorded round first: the sides start (and load) all at once, and a side asked
    // first would be measured while the others are still loading.
    for server in &mut servers {
        commands.iter().for_each(|c| drop(server.ask(c)));
    }
    let mut answers = vec![vec![Vec::with_capacity(pairs); commands.len()]; servers.len()];
    for i in 0..pairs {
        for (c, command) in commands.iter().enumerate() {
            for k in 0..servers.len() {
                let side = (i + c + k) % servers.len();
                // A pause first: OpenMP's helper threads spin for a while after a
                // computation; the side asked next should not share the cores with them.
                std::thread::sleep(PAUSE);
                answers[side][c].push(servers[side].ask(command));
            }
        }
    }
    servers.into_iter().for_each(Server::quit);
    answers
}

/// The median of `v` and a 95% confidence interval for it (by order statistics: the ranks
/// n/2 ± 0.98·√n, the sign test's interval), as [median, low, high].
fn median_ci(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return [f64::NAN; 3];
    }
    let half = 0.98 * (n as f64).sqrt();
    let low = ((n as f64 / 2.0 - half).floor().max(0.0)) as usize;
    let high = ((n as f64 / 2.0 + half).ceil() as usize).min(n - 1);
    [v[n / 2], v[low], v[high]]
}

/// Run the harness; the report (also written to `out_dir`).
pub fn measure(cfg: &Config) -> Value {
    std::fs::create_dir_all(&cfg.out_dir).expect("results folder");
    // Scratch files (the AOT guest, an empty module) stay out of the results folder.
    let scratch = std::env::temp_dir().join(format!("wasmedge-nn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let interpreted = guest("bench-speed");
    let aot = scratch.join("bench-speed.aot.wasm");
    let compiled = wasmedge_command().arg("compile").arg(&interpreted).arg(&aot).output().expect("wasmedge compile");
    assert!(compiled.status.success(), "wasmedge compile failed: {}", String::from_utf8_lossy(&compiled.stderr));

    // For WasmEdge alone: a module that imports and does nothing.
    let empty = scratch.join("empty.wasm");
    std::fs::write(
        &empty,
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#).unwrap(),
    )
    .unwrap();
    let model_path = root().join(model(SMOLLM2));
    let wav = format!("{SPEECH}/{SPEECH_SAMPLE}");
    let (tokens, threads) = (cfg.tokens.to_string(), cfg.threads.to_string());
    let prompt = PROMPT;
    let llm = ggml_preload("default", SMOLLM2);
    let asr = format!("asr:Whisper:AUTO:{}", model(WHISPER_TINY_EN));
    let wasm_side = |side: usize| if side == 1 { &interpreted } else { &aot };

    // Whole processes: what only a process shows (loading, exec → first token, peak memory,
    // cold start).
    let mut gen: Vec<Vec<Map<String, Value>>> = vec![Vec::new(); 3];
    let (mut cold, mut cold_bare) = (Vec::new(), Vec::new());
    for round in 0..cfg.runs {
        // The sides take turns going first: on a machine whose clock or caches favour whatever
        // runs first (or after a pause), a fixed order would bias the medians.
        for k in 0..3 {
            let side = (round + k) % 3;
            let r = if side == 0 {
                let mut native = native_command(&cfg.llama_native);
                native.arg(&model_path).args([prompt, &tokens, &threads]);
                run(native)
            } else {
                run(wasmedge(&llm, wasm_side(side), &["gen", "default", prompt, &tokens, &threads]))
            };
            gen[side].push(process_figures(&r));
        }
        // Cold start, no model: exec to exit of a guest that does nothing (with the plugin),
        // and of an empty module without plugins (WasmEdge alone).
        cold.push(run(wasmedge(&llm, &aot, &["noop"])).wall_ms);
        let mut bare = wasmedge_command();
        bare.env("WASMEDGE_PLUGIN_PATH", scratch.join("no-plugins")).arg(&empty);
        cold_bare.push(run(bare).wall_ms);
    }

    // Paired: speed, each wasm figure next to a native one.
    let gen_servers = (0..3)
        .map(|side| {
            Server::start(if side == 0 {
                let mut native = native_command(&cfg.llama_native);
                native.arg("--serve").arg(&model_path).args([prompt, &tokens, &threads]);
                native
            } else {
                wasmedge(&llm, wasm_side(side), &["serve-gen", "default", prompt, &tokens, &threads])
            })
        })
        .collect();
    let gen_pairs = paired(gen_servers, &["prompt", "stream", "decode"], cfg.pairs);
    let asr_servers = (0..3)
        .map(|side| {
            Server::start(if side == 0 {
                let mut native = native_command(&cfg.whisper_native);
                native.args(["--serve", model(WHISPER_TINY_EN).as_str(), &wav, &threads]);
                native
            } else {
                wasmedge(&asr, wasm_side(side), &["serve-asr", "asr", &wav, &threads])
            })
        })
        .collect();
    let asr_pairs = paired(asr_servers, &["asr"], cfg.pairs);
    let audio_ms = audio_ms(&root().join(&wav));

    // Per side, per pair: the speed figures.
    let speed: Vec<Vec<Map<String, Value>>> = (0..3)
        .map(|side| {
            (0..cfg.pairs)
                .map(|i| {
                    let (p, st, d) = (&gen_pairs[side][0][i], &gen_pairs[side][1][i], &gen_pairs[side][2][i]);
                    let a = &asr_pairs[side][0][i];
                    let f = |m: &Map<String, Value>, k: &str| m[k].as_f64().unwrap();
                    let mut m = Map::new();
                    m.insert("prompt_tokens".into(), json!(f(p, "prompt_tokens")));
                    m.insert("ttft_ms".into(), json!(f(p, "ttft_ms")));
                    m.insert("prompt_tok_s".into(), json!(f(p, "prompt_tokens") / f(p, "ttft_ms") * 1e3));
                    m.insert("decode_tok_s".into(), json!(f(d, "decode_tokens") / f(d, "decode_ms") * 1e3));
                    m.insert("stream_token_ms".into(), json!(f(st, "stream_token_ms")));
                    m.insert("whisper_rtf".into(), json!(f(a, "transcribe_ms") / audio_ms));
                    m
                })
                .collect()
        })
        .collect();

    let mut sides = Map::new();
    for (i, name) in SIDES.iter().enumerate() {
        let mut m = medians(&gen[i]);
        m.extend(medians(&speed[i]));
        sides.insert(name.to_string(), Value::Object(m));
    }
    // Each ratio is the median over pairs of that pair's wasm/native ratio (higher is
    // better for wasm), with its 95% confidence interval.
    let ratio = |side: usize, key: &str, higher_is_better: bool| {
        let per_pair = (0..cfg.pairs).map(|i| {
            let (w, n) = (speed[side][i][key].as_f64().unwrap(), speed[0][i][key].as_f64().unwrap());
            if higher_is_better {
                w / n
            } else {
                n / w
            }
        });
        median_ci(per_pair.collect())
    };
    let (mut ratios, mut intervals) = (Map::new(), Map::new());
    for (i, side) in SIDES.iter().enumerate().skip(1) {
        let r = [
            ("prompt", ratio(i, "prompt_tok_s", true)),
            ("decode", ratio(i, "decode_tok_s", true)),
            ("streaming", ratio(i, "stream_token_ms", false)),
            ("whisper_rtf", ratio(i, "whisper_rtf", false)),
        ];
        ratios.insert(side.to_string(), r.iter().map(|(k, v)| (k.to_string(), json!(v[0]))).collect());
        intervals.insert(side.to_string(), r.iter().map(|(k, v)| (k.to_string(), json!([v[1], v[2]]))).collect());
    }
    // Every figure behind the medians, for judging their spread.
    let keep = |runs: &[Vec<Map<String, Value>>]| -> Map<String, Value> {
        SIDES
            .iter()
            .zip(runs)
            .map(|(name, r)| (name.to_string(), Value::Array(r.iter().cloned().map(Value::Object).collect())))
            .collect()
    };
    let report = json!({
        "model": SMOLLM2,
        "whisper_model": WHISPER_TINY_EN,
        "prompt_tokens": sides["native"]["prompt_tokens"],
        "tokens": cfg.tokens,
        "threads": cfg.threads,
        "runs": cfg.runs,
        "pairs": cfg.pairs,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu_name(),
        "sides": sides,
        "ratios_wasm_over_native": ratios,
        "ratios_ci95": intervals,
        "cold_start_ms": { "wasmedge_with_plugin": median(cold), "wasmedge_without_plugins": median(cold_bare) },
        "rounds": keep(&gen),
        "paired": keep(&speed),
    });
    write(cfg, &report);
    let _ = std::fs::remove_dir_all(&scratch);
    report
}

/// The length of a 16 kHz mono 16-bit WAV file's audio, in ms.
fn audio_ms(wav: &Path) -> f64 {
    let bytes = std::fs::metadata(wav).unwrap_or_else(|e| panic!("{}: {e}", wav.display())).len();
    (bytes - 44) as f64 / 2.0 / 16.0
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_default()
}

/// The markdown table of a report.
pub fn table(r: &Value) -> String {
    let s = &r["sides"];
    let mut md = String::from("| | native | wasm, interpreted | wasm, AOT |\n|---|---:|---:|---:|\n");
    let rows: [(&str, &str, usize); 8] = [
        ("prompt (tok/s)", "prompt_tok_s", 1),
        ("decode (tok/s)", "decode_tok_s", 1),
        ("time to first token (ms)", "ttft_ms", 1),
        ("streaming, per token (ms)", "stream_token_ms", 3),
        ("model load (ms)", "load_ms", 1),
        ("exec → first token (ms)", "exec_to_first_token_ms", 1),
        ("peak RSS (MiB)", "peak_rss_mib", 1),
        ("Whisper real-time factor", "whisper_rtf", 4),
    ];
    for (label, key, digits) in rows {
        let cell = |side: &str| format!("{:.*}", digits, s[side][key].as_f64().unwrap_or(f64::NAN));
        md.push_str(&format!(
            "| {label} | {} | {} | {} |\n",
            cell("native"),
            cell("wasm_interpreted"),
            cell("wasm_aot")
        ));
    }
    md.push_str("\n| wasm / native (95% interval) | interpreted | AOT |\n|---|---:|---:|\n");
    for k in ["prompt", "decode", "streaming", "whisper_rtf"] {
        let ratio = |side: &str| {
            let v = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
            let ci = &r["ratios_ci95"][side][k];
            format!("{:.3} ({:.3}–{:.3})", v(&r["ratios_wasm_over_native"][side][k]), v(&ci[0]), v(&ci[1]))
        };
        md.push_str(&format!("| {k} | {} | {} |\n", ratio("wasm_interpreted"), ratio("wasm_aot")));
    }
    let c = &r["cold_start_ms"];
    md.push_str(&format!(
        "\nCold start without a model, exec → exit: {:.1} ms for the harness's guest doing nothing with the plugin loaded; {:.1} ms for an empty module without plugins (WasmEdge alone).\n",
        c["wasmedge_with_plugin"].as_f64().unwrap_or(f64::NAN),
        c["wasmedge_without_plugins"].as_f64().unwrap_or(f64::NAN)
    ));
    md.push_str(&format!(
        "\n{}, a {}-token prompt, {} greedy tokens, {} threads; speed: medians of {} paired measurements (ratios: medians of each pair's ratio); load, exec → first token, memory and cold start: medians of {} processes; {}; {} cores ({}).\n",
        r["model"].as_str().unwrap_or(""),
        r["prompt_tokens"],
        r["tokens"],
        r["threads"],
        r["pairs"],
        r["runs"],
        r["whisper_model"].as_str().unwrap_or(""),
        r["cores"],
        r["cpu"].as_str().unwrap_or("")
    ));
    md
}

fn write(cfg: &Config, report: &Value) {
    std::fs::write(cfg.out_dir.join("speed.json"), serde_json::to_string_pretty(report).unwrap()).unwrap();
    std::fs::write(cfg.out_dir.join("speed.md"), table(report)).unwrap();
    chart(&cfg.out_dir.join("speed.png"), report).expect("the chart");
}

/// A bar chart of the ratios wasm/native.
fn chart(path: &Path, r: &Value) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let keys = ["prompt", "decode", "streaming", "whisper_rtf"];
    let root = BitMapBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("speed through WasmEdge / native (1.0 = native)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..keys.len() as f64, 0f64..1.2)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(keys.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 && i < keys.len() {
                keys[i].to_string()
            } else {
                String::new()
            }
        })
        .draw()?;
    for (j, (side, colour)) in
        [("wasm_interpreted", BLUE.mix(0.6)), ("wasm_aot", GREEN.mix(0.8))].into_iter().enumerate()
    {
        chart
            .draw_series(keys.iter().enumerate().map(|(i, k)| {
                let v = r["ratios_wasm_over_native"][side][*k].as_f64().unwrap_or(0.0);
                let x0 = i as f64 + 0.1 + j as f64 * 0.4;
                Rectangle::new([(x0, 0.0), (x0 + 0.38, v)], colour.filled())
            }))?
            .label(if j == 0 { "interpreted guest" } else { "AOT guest" })
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart.draw_series(LineSeries::new([(0.0, 0.98), (keys.len() as f64, 0.98)], RED.stroke_width(1)))?.label("0.98");
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
