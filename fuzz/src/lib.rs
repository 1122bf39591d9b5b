//! What the fuzz targets share: a stand-in backend ("echo"), so that the plugin's own ABI layer — pointer decoding, handles, owners, limits,
//! error codes — runs exactly as in the plugin, at fuzzing speed and without a model.
//!
//! The backends themselves are exercised by the end-to-end tests with real models and by the
//! guest-driven stress program (tests/guests/stress).

use std::borrow::Cow;
use std::path::Path;
use wasmedge_nn_plugin::abi::{Errno, ExecutionTarget, Tensor};
use wasmedge_nn_plugin::backend::{Backend, ExecutionContext, Graph};
use wasmedge_nn_plugin::error::{NnError, NnResult};

/// The first bytes of an "echo model".
pub const ECHO_MAGIC: &[u8] = b"ECHO";

/// A backend whose models are any bytes starting with [`ECHO_MAGIC`]; its contexts give
/// back their prompt, reversed by `compute`, byte by byte by `compute_single`.
pub struct Echo;

fn model(bytes: &[u8]) -> NnResult<Box<dyn Graph>> {
    if bytes.starts_with(ECHO_MAGIC) {
        Ok(Box::new(EchoGraph))
    } else {
        Err(NnError::invalid_argument("not an echo model"))
    }
}

fn config(json: Option<&[u8]>) -> NnResult<()> {
    match json.filter(|j| !j.is_empty()) {
        Some(j) => serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(j)
            .map(|_| ())
            .map_err(|e| NnError::invalid_encoding(format!("config: {e}"))),
        None => Ok(()),
    }
}

impl Backend for Echo {
    fn recognizes(&self, model: &[u8]) -> bool {
        model.starts_with(ECHO_MAGIC)
    }

    fn load_from_builders(&self, builders: &[&[u8]], _: ExecutionTarget) -> NnResult<Box<dyn Graph>> {
        config(builders.get(1).copied())?;
        model(builders.first().copied().unwrap_or_default())
    }

    fn load_from_file(&self, path: &Path, json: Option<&[u8]>, _: ExecutionTarget) -> NnResult<Box<dyn Graph>> {
        config(json)?;
        model(&std::fs::read(path).map_err(|e| NnError::runtime(e.to_string()))?)
    }
}

struct EchoGraph;

impl Graph for EchoGraph {
    fn init_execution_context(&self) -> NnResult<Box<dyn ExecutionContext>> {
        Ok(Box::<EchoContext>::default())
    }

    /// As the real backends: a name asked for with another config gets a graph with it.
    fn with_config(&self, json: &[u8]) -> NnResult<Box<dyn Graph>> {
        config(Some(json))?;
        Ok(Box::new(EchoGraph))
    }
}

#[derive(Default)]
struct EchoContext {
    prompt: Vec<u8>,
    output: Vec<u8>,
    /// The stream's position, while one is open.
    streamed: Option<usize>,
    last: Vec<u8>,
    last_error: String,
}

impl ExecutionContext for EchoContext {
    fn set_input(&mut self, index: u32, tensor: Tensor<'_>) -> NnResult<()> {
        match index {
            0 => self.prompt = tensor.data.to_vec(),
            1 => config(Some(tensor.data))?,
            _ => return Err(NnError::invalid_argument(format!("no input {index}"))),
        }
        Ok(())
    }

    fn compute(&mut self) -> NnResult<()> {
        self.output = self.prompt.iter().rev().copied().collect();
        Ok(())
    }

    fn get_output(&mut self, index: u32) -> NnResult<Cow<'_, [u8]>> {
        match index {
            0 => Ok(Cow::Borrowed(&self.output)),
            1 => Ok(Cow::Owned(serde_json::json!({ "last_error": self.last_error }).to_string().into_bytes())),
            _ => Err(NnError::invalid_argument(format!("no output {index}"))),
        }
    }

    fn compute_single(&mut self) -> NnResult<()> {
        let at = self.streamed.get_or_insert(0);
        let Some(&b) = self.prompt.get(*at) else {
            return Err(NnError::new(Errno::EndOfSequence, "end of the stream"));
        };
        *at += 1;
        self.last = vec![b];
        Ok(())
    }

    fn get_output_single(&mut self, index: u32) -> NnResult<Cow<'_, [u8]>> {
        match index {
            0 => Ok(Cow::Borrowed(&self.last)),
            _ => self.get_output(index),
        }
    }

    fn fini_single(&mut self) -> NnResult<()> {
        self.streamed = None;
        self.last.clear();
        Ok(())
    }

    fn note_error(&mut self, message: &str) {
        self.last_error = message.to_owned();
    }
}
