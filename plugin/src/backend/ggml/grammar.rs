//! Constrained output: a GBNF grammar (given as `grammar`, or made from a `json-schema` by
//! llama.cpp's converter, see options.rs) turned into llama.cpp's grammar sampler, which
//! masks every token that cannot continue the grammar.

use super::options::Options;
use crate::error::{NnError, NnResult};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

/// The rule generation starts from, as in llama.cpp.
const ROOT: &str = "root";

/// llama.cpp's grammar sampler for `gbnf`. A grammar that does not parse is InvalidArgument
/// with the parser's own message (which llama.cpp prints to stderr rather than logging).
pub fn sampler(model: &LlamaModel, gbnf: &str) -> NnResult<LlamaSampler> {
    let (sampler, printed) = crate::stderr_capture::capture(|| LlamaSampler::grammar(model, gbnf, ROOT));
    // The parser's line becomes the message; anything else printed meanwhile (another
    // thread's output, the grammar's text echoed after the error) goes on to stderr.
    let mut reason = None;
    for line in printed.lines() {
        match line.split_once("error parsing grammar: ") {
            Some((_, why)) if reason.is_none() => reason = Some(why.trim().to_owned()),
            _ => crate::stderr_capture::pass_on(&format!("{line}\n")),
        }
    }
    sampler.map_err(|e| {
        let reason = reason.unwrap_or_else(|| e.to_string());
        NnError::invalid_argument(format!(
            "the grammar is not valid GBNF: {reason} (see llama.cpp's grammars/README.md; the start rule is '{ROOT}')"
        ))
    })
}

/// The grammar these options constrain generation with, if any: `grammar` as given, or
/// `json-schema` converted.
pub fn of(options: &Options) -> NnResult<Option<String>> {
    if let Some(g) = &options.grammar {
        return Ok(Some(g.clone()));
    }
    let Some(schema) = &options.json_schema else { return Ok(None) };
    llama_cpp_2::json_schema_to_grammar(schema).map(Some).map_err(|e| {
        NnError::invalid_argument(format!(
            "llama.cpp cannot turn this json-schema into a grammar ({e}); it takes the JSON Schema subset \
             of llama.cpp's json_schema_to_grammar (type, properties, required, items, enum, const, \
             anyOf/oneOf/allOf, pattern, min/max lengths and items, local $ref)"
        ))
    })
}

/// Check the constraint of these options against the model (done when the options are set,
/// so a bad grammar fails there rather than at compute).
pub fn check(model: &LlamaModel, options: &Options) -> NnResult<()> {
    match of(options)? {
        Some(g) => sampler(model, &g).map(drop),
        None => Ok(()),
    }
}
