//! How a build fails: the two endings the log and the result tell apart.

/// Why a build failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// A failure of the app or its buildpacks: its lines end the log after ` !     `, the first
    /// is the result's message.
    Build(Vec<String>),
    /// Anything else (I/O, the API, a process that would not start or end): the log says
    /// ` !     The builder failed: …`.
    Builder(String),
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    /// A build failure of one line.
    pub fn build(line: impl Into<String>) -> Failure {
        Failure::Build(vec![line.into()])
    }
}

/// Turns an I/O error into a builder failure that says what was being done.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Failure::Builder(format!("{}: {e}", what())))
    }
}
