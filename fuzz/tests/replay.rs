//! Replays every saved input under `regressions/<target>/` (findings, once fixed) and every
//! seed under `seeds/<target>/` through the target's checks, on stable, without libFuzzer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn every_saved_input_passes_its_targets_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    let mut failed = Vec::new();
    for dir in ["regressions", "seeds"] {
        for target in source_postmark_fuzz::TARGETS {
            let Ok(files) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for f in files {
                let path = f.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                replayed += 1;
                let run = catch_unwind(AssertUnwindSafe(|| {
                    source_postmark_fuzz::check(target, &data)
                }));
                if run.is_err() {
                    failed.push(path.display().to_string());
                }
            }
        }
    }
    assert!(replayed > 0, "no saved inputs found");
    assert!(
        failed.is_empty(),
        "{} of {replayed} inputs fail: {failed:#?}",
        failed.len()
    );
}
