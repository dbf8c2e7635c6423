//! Storage errors.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A fenced write by a runner whose claim on the execution lapsed and was taken
    /// (it must stop: another runner carries the execution on).
    #[error("{0}")]
    LostClaim(String),
    /// The request repeats an earlier one (an idempotency key) but asks for something else.
    #[error("{0}")]
    Mismatch(String),
    /// A shortened id that several executions begin with: the prefix, and the first few
    /// of them (by id, so the oldest first).
    #[error("ambiguous id prefix `{prefix}`: it matches several executions ({}{}); give more of the id", matches.join(", "), if matches.len() >= AMBIGUOUS_SHOWN { ", …" } else { "" })]
    Ambiguous { prefix: String, matches: Vec<String> },
    /// The database cannot be reached or used right now (locked past the wait, down,
    /// restarting): worth trying again shortly.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The backend failed (its own error, kept for the log).
    #[error("database error: {0}")]
    Database(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How many of the executions an ambiguous prefix matches are named.
pub const AMBIGUOUS_SHOWN: usize = 5;
