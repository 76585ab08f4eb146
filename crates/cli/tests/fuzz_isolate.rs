//! `snipjit fuzz --isolate`: a case that kills its worker process counts as a crash,
//! is saved, and the run goes on with the next case in a new worker.

use std::process::Command;

#[test]
fn a_dying_worker_is_a_crash_and_the_run_goes_on() {
    let dir = std::env::temp_dir().join(format!("snipjit-isolate-{}", std::process::id()));
    // SNIPJIT_FUZZ_ABORT_AT makes the worker abort at that case, as a kernel fault
    // (a guard page hit) would kill it.
    let out = Command::new(env!("CARGO_BIN_EXE_snipjit"))
        .args(["fuzz", "--cases", "4", "--seed", "1", "--big-every", "0"])
        .args(["--isolate", "--guard", "--save-failures"])
        .arg(&dir)
        .env("SNIPJIT_FUZZ_ABORT_AT", "2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("cases run: 4, mismatches: 0, crashes: 1, amplified: 0, time: "),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("case 2: crash: the worker process died"),
        "{stderr}"
    );
    let saved = std::fs::read_to_string(dir.join("seed1_case2.sg")).unwrap();
    assert!(
        saved.starts_with("# snipjit fuzz: seed 1 case 2 "),
        "{saved}"
    );
    assert!(saved.contains("graph fuzz_1_2("), "{saved}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn isolated_clean_run_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_snipjit"))
        .args([
            "fuzz",
            "--cases",
            "3",
            "--seed",
            "1",
            "--big-every",
            "0",
            "--isolate",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("cases run: 3, mismatches: 0, crashes: 0, amplified: 0, time: "),
        "{stdout}"
    );
}
