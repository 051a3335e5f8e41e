//! Helpers of the tests that drive real data tools (Meltano, PyAirbyte, target-jsonl,
//! PostgreSQL with target-postgres).
//!
//! Those tests are `#[ignore]`d by default, so a plain `cargo test` lists them as
//! `ignored, needs …` instead of passing without a word on a machine without the tools.
//! `scripts/ci/singer.sh` (called by `.ci/run`) installs the tools and runs exactly these
//! tests with `--ignored`; locally, `bash scripts/ci/singer.sh` or
//! `cargo test --test it -- --ignored meltano pyairbyte postgres target_jsonl` does the same.
//! A test that runs without its tool fails, saying how to install it: it never passes empty.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The five streams these tool tests check row by row (single-field keys); the other
/// streams of the table are covered by the default tests (`datasets`, `golden`, ...).
pub const CORE_STREAMS: [&str; 5] = [
    "messages_outbound",
    "messages_inbound",
    "bounces",
    "templates",
    "message_streams",
];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `venv/bin/name` under the repository, or a failure saying how to install it.
pub fn venv_tool(venv: &str, name: &str) -> PathBuf {
    let p = repo().join(venv).join("bin").join(name);
    assert!(
        p.exists(),
        "{name} is not installed at {}: run `bash scripts/ci/singer.sh` (or `bash .ci/run`), which \
         installs it into {venv}/ and runs this test",
        p.display()
    );
    p
}

/// The code block that follows `<!-- tested: NAME -->` in README.md, or, until the README
/// carries it, in docs/notes/singer.md: the tests run the documented commands verbatim.
pub fn doc_block(name: &str) -> String {
    let marker = format!("<!-- tested: {name} -->");
    for file in ["README.md", "docs/notes/singer.md"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap_or_default();
        if let Some(block) = block_after(&text, &marker) {
            return block;
        }
    }
    panic!("no code block after '{marker}' in README.md or docs/notes/singer.md")
}

fn block_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let open = rest.find("```")?;
    let body = &rest[open + 3..];
    let body = &body[body.find('\n')? + 1..];
    let close = body.find("\n```")?;
    Some(body[..=close].to_string())
}

/// PATH with the connector's directory and `extra` in front (the docs put it on PATH).
pub fn path_with(extra: &[&Path]) -> String {
    let bin_dir = Path::new(crate::support::connector_bin())
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let mut dirs: Vec<PathBuf> = vec![bin_dir];
    dirs.extend(extra.iter().map(|p| p.to_path_buf()));
    let mut path = std::env::join_paths(dirs)
        .expect("PATH")
        .to_string_lossy()
        .into_owned();
    if let Some(old) = std::env::var_os("PATH") {
        path.push(':');
        path.push_str(&old.to_string_lossy());
    }
    path
}

/// Runs `script` with bash (`-euo pipefail`) in `dir`; returns (success, stdout+stderr).
pub fn bash(script: &str, dir: &Path, envs: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .envs(envs.iter().copied())
        .output()
        .expect("run bash");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn doc_blocks_are_found_after_their_marker() {
    let text = "intro\n<!-- tested: x -->\nSome words.\n\n```sh\necho one\necho two\n```\nafter";
    assert_eq!(
        block_after(text, "<!-- tested: x -->").as_deref(),
        Some("echo one\necho two\n")
    );
    assert!(block_after(text, "<!-- tested: y -->").is_none());
    for name in ["meltano", "pyairbyte"] {
        assert!(!doc_block(name).trim().is_empty(), "{name}");
    }
}
