//! Links the binary with packed relative relocations (DT_RELR) where the C library can
//! load them (glibc 2.36 and later): the 120,000 relocations of a binary this size then
//! take kilobytes instead of megabytes, which start-up reads and keeps resident.
//!
//! A release build for x86-64 Linux, which rustc links with its own LLD, also folds
//! identical functions (`--icf=all`): every crate and codegen unit that awaits an `async
//! fn` compiles its own copy of the state machine (and its drop glue), and the copies are
//! identical; folding them took 3 MB off the binary. Rust promises nothing about
//! function addresses being unique.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let lld = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if lld && std::env::var("PROFILE").is_ok_and(|p| p == "release") {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}

/// The build machine's glibc version, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else { return false };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}
