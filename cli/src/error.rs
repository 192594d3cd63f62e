//! What a command's failure is, and the exit code each kind gets.
//!
//! The codes follow the usual convention, and `--help` lists them:
//! 0 success (a stop asked for by SIGINT or SIGTERM included), 1 a failure
//! while running (the network, the HTTP bind, the registry), 2 a usage
//! error (a bad flag or value, an unreadable key; clap's own usage errors
//! exit 2 as well).

use std::fmt;
use std::process::ExitCode;

/// A failed command: the message printed on stderr and its exit code.
#[derive(Debug)]
pub enum CliError {
    /// The command line or what it points at is wrong (exit 2).
    Usage(String),
    /// Something failed while running (exit 1).
    Runtime(String),
}

impl CliError {
    /// A usage error with this message.
    pub fn usage(message: impl fmt::Display) -> CliError {
        CliError::Usage(message.to_string())
    }

    /// A run-time failure with this message.
    pub fn runtime(message: impl fmt::Display) -> CliError {
        CliError::Runtime(message.to_string())
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Runtime(_) => ExitCode::FAILURE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Runtime(m) => f.write_str(m),
        }
    }
}

impl From<shoal::Error> for CliError {
    fn from(e: shoal::Error) -> Self {
        match e {
            shoal::Error::Config(e) => CliError::usage(e),
            e => CliError::runtime(e),
        }
    }
}

impl From<shoal::ConfigError> for CliError {
    fn from(e: shoal::ConfigError) -> Self {
        CliError::usage(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::runtime(e)
    }
}
