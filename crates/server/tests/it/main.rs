//! The server through a real socket on 127.0.0.1:0, with a real SQLite file.

mod abuse;
mod api;
mod authz;
mod branches;
mod browser;
mod bundles;
mod calls;
mod contract;
mod gates;
mod live;
mod notify;
mod quality;
mod restart;
mod schedules;
mod secrets;
mod support;
mod ui;
