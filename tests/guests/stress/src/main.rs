//! A hostile guest: thousands of random calls against the real plugin, from a seed — calls
//! on stale, finalized, unloaded and made-up handles, double finalize and unload, set_input
//! in the middle of a stream, compute without input, metadata that does not parse or breaks
//! a limit, prompts too long for the context, bad pointers, buffers too small.
//!
//!     stress.wasm SEED CALLS MODEL.gguf SPEECH.wav
//!
//! with `tiny` (GGML) and `whisper` (Whisper) preloaded. What it checks as it goes:
//! - every code is one the ABI documents;
//! - a handle the guest does not hold (never made, finalized, unloaded) gets 1;
//! - finalizing or unloading one it holds gets 0;
//! - a stream that ended stays ended (100) until new input, `compute` or `fini_single`;
//! - TooLarge from `get_output*` writes the size needed;
//!
//! and at the end that the host still gives the answers it gave before the storm.

use raw_nn::*;
use std::collections::BTreeMap;

const CODES: [u32; 13] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 100, 101, 102, 103];
/// Far above any handle the host hands out in a run (it counts up from 0).
const MADE_UP: u32 = 0x7fff_0000;
const BAD_PTR: usize = 0xffff_fff0;
/// Whisper computations cost ~0.3 s each: this many, at most.
const WHISPER_RUNS: u32 = 12;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ggml,
    Whisper,
}

struct Graph {
    handle: u32,
    kind: Kind,
    live: bool,
}

struct Context {
    handle: u32,
    graph: u32,
    kind: Kind,
    live: bool,
    /// compute_single returned 100 and nothing reset the stream since.
    ended: bool,
}

const GGML_METADATA: &[&[u8]] = &[
    br#"{"n-predict": 8, "temp": 0, "ctx-size": 128, "threads": 1}"#,
    br#"{"n-predict": 40, "ctx-size": 32, "threads": 1}"#,
    br#"{"n-predict": 6, "run-ahead": 4, "threads": 1, "temp": 0.8, "seed": 7}"#,
    br#"{"n-predict": 12, "reverse-prompt": "the", "threads": 1}"#,
    br#"{"n-predict": 4, "threads": 1, "embedding": true, "stream-stdout": false}"#,
    b"{",
    br#"{"ctx-size": "big"}"#,
    br#"{"threads": 0}"#,
    br#"{"ctx-size": 100000000}"#,
    br#"{"run-ahead": 1000}"#,
    b"\xff\xfe",
    b"[]",
];

const WHISPER_METADATA: &[&[u8]] =
    &[br#"{"language": "en", "threads": 1}"#, br#"{"translate": true, "threads": 1}"#, b"{", br#"{"threads": "x"}"#];

struct Stress {
    rng: fastrand::Rng,
    model: Vec<u8>,
    speech: Vec<u8>,
    long_prompt: Vec<u8>,
    graphs: Vec<Graph>,
    contexts: Vec<Context>,
    codes: BTreeMap<(&'static str, u32), u32>,
    checks: u32,
    whisper_runs: u32,
}

impl Stress {
    /// Record and check one call's code.
    fn code(&mut self, call: &'static str, code: u32) -> u32 {
        assert!(CODES.contains(&code), "{call} returned {code}, which the ABI does not document");
        *self.codes.entry((call, code)).or_default() += 1;
        code
    }

    fn expect(&mut self, call: &'static str, code: u32, expected: u32, why: &str) {
        assert_eq!(code, expected, "{call}: {why}");
        self.checks += 1;
    }

    /// A graph handle: mostly one made earlier (live or not), sometimes one never made.
    fn pick_graph(&mut self) -> (u32, Option<usize>) {
        if self.graphs.is_empty() || self.rng.u8(..10) == 0 {
            return (MADE_UP + self.rng.u32(..1000), None);
        }
        let i = self.rng.usize(..self.graphs.len());
        (self.graphs[i].handle, Some(i))
    }

    fn pick_context(&mut self) -> (u32, Option<usize>) {
        if self.contexts.is_empty() || self.rng.u8(..10) == 0 {
            return (MADE_UP + self.rng.u32(..1000), None);
        }
        // Mostly live ones, so that deeper sequences happen.
        let live: Vec<usize> = (0..self.contexts.len()).filter(|&i| self.contexts[i].live).collect();
        let i = if !live.is_empty() && self.rng.u8(..4) != 0 {
            live[self.rng.usize(..live.len())]
        } else {
            self.rng.usize(..self.contexts.len())
        };
        (self.contexts[i].handle, Some(i))
    }

    fn live_context(&self, i: Option<usize>) -> bool {
        i.is_some_and(|i| self.contexts[i].live)
    }

    /// Calls on a handle the guest does not hold must get 1.
    fn check_handle(&mut self, call: &'static str, code: u32, held: bool) {
        if !held {
            self.expect(call, code, 1, "a handle this guest does not hold");
        }
    }

    fn load(&mut self) {
        let mut g = 0;
        let (code, kind) = match self.rng.u8(..8) {
            0 | 1 => (unsafe { load_by_name(b"tiny".as_ptr(), 4, &mut g) }, Some(Kind::Ggml)),
            2 => (unsafe { load_by_name(b"whisper".as_ptr(), 7, &mut g) }, Some(Kind::Whisper)),
            3 => {
                let config = br#"{"n-predict": 8, "threads": 1}"#;
                let c = unsafe {
                    load_by_name_with_config(b"tiny".as_ptr(), 4, config.as_ptr(), config.len() as u32, &mut g)
                };
                (c, Some(Kind::Ggml))
            }
            4 => {
                let c = unsafe { load_by_name(b"nope".as_ptr(), 4, &mut g) };
                self.expect("load_by_name", c, 8, "an unknown name");
                (c, None)
            }
            5 => {
                let enc = if self.rng.bool() { GGML } else { AUTODETECT };
                let b = [buf(&self.model)];
                (unsafe { load(b.as_ptr(), 1, enc, CPU, &mut g) }, Some(Kind::Ggml))
            }
            6 => {
                // Model bytes cut short, or not a model.
                let cut = self.rng.usize(..self.model.len() / 2);
                let b = [buf(&self.model[..cut])];
                let enc = [GGML, WHISPER, AUTODETECT][self.rng.usize(..3)];
                let c = unsafe { load(b.as_ptr(), 1, enc, CPU, &mut g) };
                assert_ne!(c, 0, "a model cut to {cut} bytes was loaded");
                (c, None)
            }
            _ => {
                let b = [buf(&self.model)];
                let c = unsafe { load(b.as_ptr(), 1, ONNX, CPU, &mut g) };
                self.expect("load", c, 2, "an encoding this plugin lacks");
                (c, None)
            }
        };
        self.code("load", code);
        if let (0, Some(kind)) = (code, kind) {
            // A preloaded name already held gives the same handle again.
            if !self.graphs.iter().any(|x| x.handle == g && x.live) {
                assert!(!self.graphs.iter().any(|x| x.handle == g), "graph handle {g} was reused");
                self.graphs.push(Graph { handle: g, kind, live: true });
            }
        }
    }

    fn init(&mut self) {
        let (g, i) = self.pick_graph();
        let mut c = 0;
        let code = self.code("init_execution_context", unsafe { init_execution_context(g, &mut c) });
        let held = i.is_some_and(|i| self.graphs[i].live);
        self.check_handle("init_execution_context", code, held);
        if code == 0 {
            let kind = self.graphs[i.unwrap()].kind;
            assert!(!self.contexts.iter().any(|x| x.handle == c), "context handle {c} was reused");
            self.contexts.push(Context { handle: c, graph: g, kind, live: true, ended: false });
            if kind == Kind::Ggml {
                // Keep generations short: the default is until the context is full.
                let meta = GGML_METADATA[0];
                let code = self.code("set_input", unsafe { set_input(c, 1, &tensor(meta)) });
                self.expect("set_input", code, 0, "metadata on a new context");
            }
        }
    }

    fn set_some_input(&mut self) {
        let (c, i) = self.pick_context();
        let kind = i.map_or(Kind::Ggml, |i| self.contexts[i].kind);
        let (index, data): (u32, Vec<u8>) = match (kind, self.rng.u8(..6)) {
            (Kind::Ggml, 0) => (1, GGML_METADATA[self.rng.usize(..GGML_METADATA.len())].to_vec()),
            (Kind::Ggml, 1) => (0, self.long_prompt.clone()),
            (Kind::Ggml, 2) => (0, b"\xff\xfe not text \x00".to_vec()),
            (Kind::Ggml, 3) => (0, Vec::new()),
            (Kind::Ggml, _) => (0, b"Once upon a time".to_vec()),
            (Kind::Whisper, 0) => (1, WHISPER_METADATA[self.rng.usize(..WHISPER_METADATA.len())].to_vec()),
            (Kind::Whisper, 1) => (0, b"RIFF and nothing else".to_vec()),
            (Kind::Whisper, 2) => (0, Vec::new()),
            (Kind::Whisper, _) => (0, self.speech.clone()),
        };
        let t = tensor(&data);
        // Sometimes a broken tensor: the struct, its data or its dims out of bounds, or F64.
        let broken = match self.rng.u8(..12) {
            0 => Some(unsafe { set_input(c, index, BAD_PTR as *const Tensor) }),
            1 => Some(unsafe { set_input(c, index, &Tensor { data: BAD_PTR as *const u8, data_len: 64, ..t }) }),
            2 => Some(unsafe { set_input(c, index, &Tensor { dims: BAD_PTR as *const u32, dims_len: 4, ..t }) }),
            3 => Some(unsafe { set_input(c, index, &Tensor { ty: 2, ..t }) }),
            _ => None,
        };
        if let Some(code) = broken {
            self.code("set_input", code);
            self.expect("set_input", code, 1, "a broken tensor");
            return;
        }
        let code = self.code("set_input", unsafe { set_input(c, index, &t) });
        self.check_handle("set_input", code, self.live_context(i));
        // New input ends a stream, even when it is refused (its end is what is tracked).
        if let Some(i) = i.filter(|&i| self.contexts[i].live) {
            self.contexts[i].ended = false;
        }
    }

    fn compute_some(&mut self) {
        let (c, i) = self.pick_context();
        if i.is_some_and(|i| self.contexts[i].kind == Kind::Whisper) {
            if self.whisper_runs >= WHISPER_RUNS {
                return;
            }
            self.whisper_runs += 1;
        }
        let held = self.live_context(i);
        if self.rng.bool() {
            let code = self.code("compute", unsafe { compute(c) });
            self.check_handle("compute", code, held);
            if held {
                self.contexts[i.unwrap()].ended = false;
            }
            return;
        }
        // A stream: a few steps, reading some of them.
        for _ in 0..self.rng.u8(1..14) {
            let was_ended = held && self.contexts[i.unwrap()].ended;
            let code = self.code("compute_single", unsafe { compute_single(c) });
            self.check_handle("compute_single", code, held);
            if was_ended {
                self.expect("compute_single", code, 100, "a stream that ended stays ended");
            }
            if held && code == 100 {
                self.contexts[i.unwrap()].ended = true;
            }
            if self.rng.bool() {
                self.read(c, held, true);
            }
        }
    }

    fn read(&mut self, c: u32, held: bool, single: bool) {
        let index = self.rng.u32(..3);
        let mut out = vec![0u8; 4096];
        let max = [0, 3, 4096][self.rng.usize(..3)];
        let mut written = 0u32;
        let ptr = if self.rng.u8(..10) == 0 { BAD_PTR as *mut u8 } else { out.as_mut_ptr() };
        let code = unsafe {
            if single {
                get_output_single(c, index, ptr, max, &mut written)
            } else {
                get_output(c, index, ptr, max, &mut written)
            }
        };
        let name = if single { "get_output_single" } else { "get_output" };
        self.code(name, code);
        if ptr == out.as_mut_ptr() {
            self.check_handle(name, code, held);
        } else if max > 0 {
            self.expect(name, code, 1, "an output buffer outside memory");
        }
        if code == 7 {
            assert!(written > max, "{name}: TooLarge, yet the size needed ({written}) fits {max}");
            self.checks += 1;
        }
    }

    fn end_something(&mut self) {
        match self.rng.u8(..4) {
            0 => {
                let (c, i) = self.pick_context();
                let held = self.live_context(i);
                let code = self.code("finalize_execution_context", unsafe { finalize_execution_context(c) });
                self.expect("finalize_execution_context", code, if held { 0 } else { 1 }, "finalize");
                if let Some(i) = i {
                    self.contexts[i].live = false;
                }
            }
            1 => {
                let (g, i) = self.pick_graph();
                let held = i.is_some_and(|i| self.graphs[i].live);
                let code = self.code("unload", unsafe { unload(g) });
                self.expect("unload", code, if held { 0 } else { 1 }, "unload");
                if held {
                    self.graphs[i.unwrap()].live = false;
                    for c in self.contexts.iter_mut().filter(|c| c.graph == g) {
                        c.live = false;
                    }
                }
            }
            _ => {
                let (c, i) = self.pick_context();
                let held = self.live_context(i);
                let code = self.code("fini_single", unsafe { fini_single(c) });
                self.expect("fini_single", code, if held { 0 } else { 1 }, "fini_single");
                if held {
                    self.contexts[i.unwrap()].ended = false;
                }
            }
        }
    }

    fn step(&mut self) {
        match self.rng.u8(..20) {
            0..=2 => self.load(),
            3..=5 => self.init(),
            6..=9 => self.set_some_input(),
            10..=13 => self.compute_some(),
            14..=15 => {
                let (c, i) = self.pick_context();
                let held = self.live_context(i);
                self.read(c, held, false);
            }
            _ => self.end_something(),
        }
        // Keep the host's caps out of the way: at most 12 live graphs and 24 live contexts.
        while self.graphs.iter().filter(|g| g.live).count() > 12 {
            let i = self.graphs.iter().position(|g| g.live).unwrap();
            let g = self.graphs[i].handle;
            assert_eq!(unsafe { unload(g) }, 0);
            self.graphs[i].live = false;
            self.contexts.iter_mut().filter(|c| c.graph == g).for_each(|c| c.live = false);
        }
        while self.contexts.iter().filter(|c| c.live).count() > 24 {
            let i = self.contexts.iter().position(|c| c.live).unwrap();
            assert_eq!(unsafe { finalize_execution_context(self.contexts[i].handle) }, 0);
            self.contexts[i].live = false;
        }
    }
}

/// A whole run through the guest crate's usual path, on a fresh graph: the answer (GGML) or
/// the transcript (Whisper).
fn answer(name: &str, input: &[u8], meta: &[u8]) -> Vec<u8> {
    let mut g = 0;
    assert_eq!(unsafe { load_by_name(name.as_ptr(), name.len() as u32, &mut g) }, 0, "load_by_name {name}");
    let out = run_once(g, meta, input);
    assert_eq!(unsafe { unload(g) }, 0, "unload");
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args[1].parse().expect("SEED");
    let calls: usize = args[2].parse().expect("CALLS");
    let model = std::fs::read(&args[3]).expect("the GGUF model");
    let speech = std::fs::read(&args[4]).expect("the WAV file");
    let greedy = br#"{"n-predict": 12, "temp": 0, "ctx-size": 256, "threads": 1}"#;
    let hear = br#"{"threads": 2}"#;
    let told = answer("tiny", b"Once upon a time", greedy);
    let heard = answer("whisper", &speech, hear);

    let long_prompt = b"a long prompt that does not fit a small context ".repeat(40);
    let mut s = Stress {
        rng: fastrand::Rng::with_seed(seed),
        model,
        speech,
        long_prompt,
        graphs: Vec::new(),
        contexts: Vec::new(),
        codes: BTreeMap::new(),
        checks: 0,
        whisper_runs: 0,
    };
    for _ in 0..calls {
        s.step();
    }
    // Leave some of it for the host to release when the instance ends.
    let live = (s.graphs.iter().filter(|g| g.live).count(), s.contexts.iter().filter(|c| c.live).count());

    assert_eq!(answer("tiny", b"Once upon a time", greedy), told, "GGML answers differently after the stress");
    assert_eq!(answer("whisper", &s.speech, hear), heard, "Whisper hears differently after the stress");
    let total: u32 = s.codes.values().sum();
    println!("calls: {total}");
    println!("checks: {}", s.checks);
    for ((call, code), n) in &s.codes {
        println!("code {call} {code}: {n}");
    }
    println!("left live: {} graphs, {} contexts", live.0, live.1);
    println!("answer: {:?}", String::from_utf8_lossy(&told));
    println!("transcript: {:?}", String::from_utf8_lossy(&heard).trim());
    println!("stress: survived");
}
