//! The one error type of the CLI and the exit code that each kind maps to.

use std::fmt;

/// Everything that can make a command fail. `main` prints it as one `ouro: …` line.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong: nothing was sent to the API. Exit code 2.
    Usage(String),
    /// The API answered with a 4xx/5xx status; `message` is its error body's `message`.
    Api { status: u16, message: String },
    /// A failure on this side: network, files, git, or an answer we could not read.
    Local(String),
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    pub fn local(message: impl Into<String>) -> Self {
        Self::Local(message.into())
    }

    /// 2 for usage errors (as clap does), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Api { .. } | Self::Local(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) | Self::Api { message, .. } | Self::Local(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CliError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::local("x").exit_code(), 1);
        let api = CliError::Api { status: 404, message: "no such app".into() };
        assert_eq!(api.exit_code(), 1);
        assert_eq!(api.to_string(), "no such app");
    }
}
