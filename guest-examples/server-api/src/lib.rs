//! What the server (../server) does with a request before and after the models: HTTP requests
//! parsed and responses written, OpenAI's request bodies decoded and checked (chat completions
//! with tools and pictures, embeddings, transcription forms; a tools answer read as it is
//! generated), errors in OpenAI's form. No sockets and no WASI-NN: it builds for the host as
//! well, for its tests and the fuzz targets.

pub mod answer;
pub mod body;
pub mod chat;
pub mod embeddings;
pub mod error;
pub mod http;
pub mod multipart;
pub mod tools;
pub mod transcription;

pub use error::ApiError;
