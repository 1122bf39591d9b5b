//! Execution contexts of one graph, kept for reuse. A context's KV cache holds the last
//! conversation it served, so a request goes to the idle context whose last prompt and
//! answer share the longest start with its prompt: the next turn of a chat evaluates only
//! what is new. (The public guest crate cannot finalize a context; the plugin makes an idle
//! one cheap, and this pool never makes more than its cap.)

use crate::error;
use server_api::ApiError;
use wasmedge_wasi_nn::{Graph, GraphExecutionContext};

pub struct Pool {
    graph: Graph,
    idle: Vec<(GraphExecutionContext, Vec<u8>)>,
    made: usize,
    max: usize,
}

/// Shorter shared starts than this do not make an idle context worth taking over a new one.
const WORTH_REUSING: usize = 64;

impl Pool {
    pub fn new(graph: Graph, max: usize) -> Self {
        Self { graph, idle: Vec::new(), made: 0, max: max.max(1) }
    }

    /// A context for `prompt`.
    pub fn take(&mut self, prompt: &[u8]) -> Result<GraphExecutionContext, ApiError> {
        let best = self
            .idle
            .iter()
            .enumerate()
            .map(|(i, (_, history))| (common_prefix(history, prompt), i))
            .max();
        match best {
            Some((shared, i)) if shared >= WORTH_REUSING || self.made >= self.max => Ok(self.idle.swap_remove(i).0),
            _ if self.made < self.max => {
                let ctx = self.graph.init_execution_context().map_err(|e| error::nn("making an execution context", e))?;
                self.made += 1;
                Ok(ctx)
            }
            _ => Err(ApiError::busy(format!(
                "all {} of this model's contexts are answering requests (--contexts); try again",
                self.max
            ))),
        }
    }

    /// Contexts made so far, and how many of them are answering a request now.
    pub fn max(&self) -> usize {
        self.max
    }

    pub fn counts(&self) -> (usize, usize) {
        (self.made, self.made - self.idle.len())
    }

    /// `ctx` is free again; its KV holds `history` (the prompt and answer as text).
    pub fn give(&mut self, ctx: GraphExecutionContext, history: Vec<u8>) {
        self.idle.push((ctx, history));
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
