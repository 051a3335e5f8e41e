//! Properties checked by the fuzz targets, and the independent oracles they compare against.
//!
//! Each target in `fuzz_targets/` is one line calling a `check` function here, so a finding can
//! be replayed on stable without libFuzzer (`cargo run --bin replay -- <target> <file>` is not
//! needed: `cargo test` here replays every file under `regressions/`).
//!
//! A property that fails panics with a message naming the property; libFuzzer then saves the
//! input under `fuzz/artifacts/<target>/`.

pub mod civil;
pub mod config;
pub mod jsonish;
pub mod page;
pub mod selection;
pub mod windows;

/// Dispatches to a target's check by name (used by the replay test and `scripts/fuzz.sh`).
pub fn check(target: &str, data: &[u8]) {
    match target {
        "page" => page::check(data),
        "config" => config::check(data),
        "catalog" => selection::check_catalog(data),
        "state" => selection::check_state(data),
        "windows" => windows::check(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

pub const TARGETS: &[&str] = &["page", "config", "catalog", "state", "windows"];
