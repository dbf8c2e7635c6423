//! End-to-end tests of the `opsbook` binary: real processes, a real SQLite file.

mod aws_health;
mod aws_secrets;
mod aws_sso;
mod aws_steps;
mod calls;
mod cancel;
mod chaos;
mod cli;
mod codepipeline;
mod durability;
mod engine;
mod gate;
mod logs;
mod parallel;
mod postgres;
mod push;
mod quality;
mod remote;
mod reread;
mod security;
mod server;
mod ssm_targets;
mod support;
mod targets;
mod triggers;
