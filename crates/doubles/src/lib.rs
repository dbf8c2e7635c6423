//! Test doubles of remote services that cannot be reached from here, each speaking the
//! service's real wire protocol, so the real client (the AWS SDK) talks to them unchanged.
//! Used by tests and benches only; never linked into the `opsbook` binary.
//!
//! Each double is a plain thread serving one connection at a time on `127.0.0.1:0`.

pub mod health;
pub mod http;
pub mod lambda;
pub mod scenario;
pub mod secrets;
pub mod sns;
pub mod ssm;
pub mod sso;
pub mod sts;
