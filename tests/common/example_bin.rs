//! Example binaries, built from the current source on first use in each test process
//! (`cargo build` is a no-op when they are up to date), never reused from an earlier
//! build.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{LazyLock, Mutex};

static BUILT: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// `target/<profile>/examples/<name>`, freshly built.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let mut built = BUILT.lock().unwrap();
    if !built.contains(name) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--all-features", "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example {name} failed");
        built.insert(name.to_owned());
    }
    dir.join("examples").join(name)
}
