//! The fuzz targets as regression tests on the stable toolchain: every seed,
//! every committed corpus input (`fuzz/corpus/<target>/`) and every crash
//! reproducer (`fuzz/regressions/<target>/`) through the same functions the
//! libFuzzer targets call (src/fuzzing). A panic here is a finding.

use std::path::{Path, PathBuf};

use device_lorawan::fuzzing::{self, TARGETS};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_seed_runs_clean() {
    let seeds = fuzzing::seeds();
    for t in TARGETS {
        let n = seeds.iter().filter(|(name, _)| *name == t.name).count();
        assert!(n > 0, "target {} has no seed", t.name);
    }
    for (name, input) in &seeds {
        fuzzing::run(name, input);
    }
    fuzzing::remove_scratch();
}

#[test]
fn committed_corpora_and_reproducers_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let (mut replayed, mut listed) = (0, 0);
    for t in TARGETS {
        let corpus = inputs(&root.join("corpus").join(t.name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{} is missing or empty",
            t.name
        );
        for p in corpus
            .iter()
            .chain(&inputs(&root.join("regressions").join(t.name)))
        {
            // (A campaign running beside this test replaces inputs as it
            // shrinks them: one that just went is skipped.)
            listed += 1;
            let Ok(data) = std::fs::read(p) else { continue };
            let outcome = std::panic::catch_unwind(|| fuzzing::run(t.name, &data));
            assert!(outcome.is_ok(), "{} panics on {}", t.name, p.display());
            replayed += 1;
        }
    }
    fuzzing::remove_scratch();
    eprintln!("replayed {replayed} inputs over {} targets", TARGETS.len());
    // Only a campaign running beside this test makes inputs vanish, a few.
    assert!(
        replayed >= TARGETS.len() && replayed * 100 >= listed * 99,
        "replayed {replayed} of {listed} inputs"
    );
}

/// Writes the seeds into fuzz/corpus (fuzz/campaign.sh runs it first).
#[test]
#[ignore]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    for (i, (name, input)) in fuzzing::seeds().iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i:03}")), input).unwrap();
    }
    fuzzing::remove_scratch();
}
