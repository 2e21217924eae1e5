//! The one error type of `xtask`, and how each kind maps to an exit code.

/// Why an `xtask` command stopped.
///
/// `bench-compare` and `gate` promise exit codes 0 (no regression), 1 (regression) and
/// 2 (bad input); everything that is not a regression but stops the command is `BadInput`
/// or `Failed`, and both carry a message that says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file, ref, flag or config the user gave cannot be used (exit code 2).
    #[error("bad input: {message}")]
    BadInput {
        /// What is wrong, and what to do about it.
        message: String,
    },
    /// A step (a cargo command, a bench run, a lint) ran and failed (exit code 1).
    #[error("failed: {message}")]
    Failed {
        /// Which step failed, and how to rerun it alone.
        message: String,
    },
}

impl Error {
    /// A `BadInput` error with this message.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error::BadInput {
            message: message.into(),
        }
    }

    /// A `Failed` error with this message.
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed {
            message: message.into(),
        }
    }

    /// The process exit code this error maps to: 2 for bad input, 1 for a failed step.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::BadInput { .. } => 2,
            Error::Failed { .. } => 1,
        }
    }
}

/// Result alias used across `xtask`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
