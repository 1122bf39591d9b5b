//! One error type for the whole plugin: an ABI error code plus a message that says what was
//! wrong (and, where there is one, the fix). The boundary logs the message and returns the code.

use crate::abi::Errno;
use std::fmt;

#[derive(Debug, Clone)]
pub struct NnError {
    pub errno: Errno,
    pub message: String,
}

pub type NnResult<T> = Result<T, NnError>;

impl NnError {
    pub fn new(errno: Errno, message: impl Into<String>) -> Self {
        Self { errno, message: message.into() }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Errno::InvalidArgument, message)
    }
    pub fn invalid_encoding(message: impl Into<String>) -> Self {
        Self::new(Errno::InvalidEncoding, message)
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(Errno::RuntimeError, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Errno::NotFound, message)
    }
    pub fn out_of_bounds(offset: u32, len: u32) -> Self {
        Self::invalid_argument(format!("guest pointer {offset:#x} with length {len} lies outside the guest's memory"))
    }
}

impl fmt::Display for NnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.errno, self.message)
    }
}

impl std::error::Error for NnError {}
