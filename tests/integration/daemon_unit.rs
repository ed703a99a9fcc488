//! `systemd/vosd.service` passes `systemd-analyze verify` where the tool
//! exists (on a copy whose ExecStart is the binary cargo built).

use std::process::Command;

#[test]
fn unit_file_verifies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/vosd.service")).unwrap();
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "SupplementaryGroups=video",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "DevicePolicy=closed",
    ] {
        assert!(unit.contains(key), "unit lacks {key}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no systemd-analyze on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vosd.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/vosd", env!("CARGO_BIN_EXE_vosd")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("vosd.service:"),
        "systemd-analyze verify: {text}"
    );
}
