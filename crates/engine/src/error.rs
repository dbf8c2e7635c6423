//! Engine errors: problems that stop the engine from doing what was asked.
//! A failing step is not an error; it is an outcome recorded in the store.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] opsbook_store::Error),
    /// The request cannot be carried out as asked (e.g. resuming a finished execution).
    #[error("{0}")]
    Invalid(String),
    /// Parameters failed their checks; every problem is listed.
    #[error("invalid parameters:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Params(Vec<opsbook_core::ParamError>),
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
