//! What the end-to-end tests of `cnd-cli` share: the worker binary, and how
//! a run's exit is checked.

// Each test binary compiles this module, and none calls all of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `cnd-cli` binary under test.
pub const CLI: &str = env!("CARGO_BIN_EXE_cnd-cli");

/// The cnd-worker binary, built once per test process with the profile of the
/// `cnd-cli` under test (a test cannot ask Cargo for another package's binary),
/// unless `CND_WORKER_BIN` names one.
pub fn worker_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CND_WORKER_BIN") {
            return PathBuf::from(bin);
        }
        let out_dir = Path::new(CLI)
            .parent()
            .expect("the binary is in a directory");
        let target_dir = out_dir.parent().expect("target/<profile>");
        let profile = match out_dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => "release",
            _ => "test",
        };
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace");
        let mut build = Command::new(cargo);
        build
            // The features of `cargo test --workspace --all-features` (what CI
            // runs), so the dependencies it compiled are reused.
            .args(["build", "--quiet", "--workspace", "--all-features"])
            .args(["--bin", "cnd-worker", "--profile", profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(workspace);
        // The variables cargo sets for a test would make the nested build look dirty.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("CARGO_") && name != "CARGO_HOME" {
                build.env_remove(&name);
            }
        }
        let status = build.status().expect("running cargo build -p cnd-worker");
        assert!(status.success(), "cargo build -p cnd-worker failed");
        let bin = out_dir.join("cnd-worker");
        assert!(bin.is_file(), "no worker at {}", bin.display());
        bin
    })
}

/// Pids of the processes whose environment (`/proc/PID/environ`) passes `matches`,
/// given as its `NAME=value` entries: how the tests find a run's workers.
pub fn processes_where(matches: impl Fn(&[&[u8]]) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
                matches(&vars)
            })
        })
        .collect()
}

/// `command` with every `AWS_` variable of this process removed: a test's run
/// must not reach a real account, whatever the developer's shell holds.
pub fn without_aws(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(&name);
        }
    }
    command
}

/// `cnd-cli ARGS` to completion, without `RUST_LOG` or a forced backend.
pub fn cnd(args: &[&str]) -> Output {
    Command::new(CLI)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("CND_BACKEND")
        .output()
        .expect("cnd-cli runs")
}

/// What a run printed on stdout.
pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a run printed on stderr.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The run exited with `code`; its stderr is shown when it did not.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {}",
        stderr_of(output)
    );
}
