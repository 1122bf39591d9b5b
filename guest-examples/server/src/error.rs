//! A WASI-NN call's failure as an error for the client (server_api::ApiError).

use server_api::ApiError;

/// A WASI-NN call failed: its error, for the client.
pub fn nn(what: &str, e: wasmedge_wasi_nn::Error) -> ApiError {
    use wasmedge_wasi_nn::{BackendError, Error};
    match e {
        Error::BackendError(BackendError::PromptTooLong) => ApiError::invalid(
            "messages",
            format!("{what}: the prompt is longer than the model's context (ctx-size); shorten it or start the server with a larger --ctx-size"),
        )
        .with_code("context_length_exceeded"),
        Error::BackendError(BackendError::Busy) => ApiError::busy(format!("{what}: the model is busy; try again")),
        Error::BackendError(BackendError::InvalidArgument) => {
            ApiError::new(400, format!("{what}: the model refused the input (InvalidArgument); the host's log says why"), "invalid_request_error")
        }
        other => ApiError::server(format!("{what}: {other}")),
    }
}
