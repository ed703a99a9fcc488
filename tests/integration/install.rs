//! `scripts/install.sh` into a staging tree (DESTDIR): the files land where
//! the unit expects them, the installed binary accepts the installed
//! configuration, a second install keeps an edited configuration, and
//! `--uninstall` leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

fn script(destdir: &Path, args: &[&str]) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(root.join("scripts/install.sh"))
        .args(args)
        .env("DESTDIR", destdir)
        .output()
        .expect("bash runs")
}

/// `vosd run --check` of `config` by the binary installed under `destdir`,
/// with the installed models.
fn check_installed(destdir: &Path, config: &Path) -> std::process::Output {
    crate::common::target_command(destdir.join("usr/bin/vosd"))
        .args(["run", "--check", "--config"])
        .arg(config)
        .env("VOSD_MODEL_DIR", destdir.join("usr/share/vosd/models"))
        .output()
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn install_then_uninstall_leaves_nothing() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let out = script(d, &["--binary", env!("CARGO_BIN_EXE_vosd")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/bin/vosd",
        "usr/share/vosd/models/encoder_lite0_fp32.onnx",
        "usr/share/vosd/models/encoder_lite0_int8.onnx",
        "usr/share/vosd/models/memnet/key.onnx",
        "usr/share/vosd/models/memnet/value.onnx",
        "usr/share/vosd/models/memnet/decoder.onnx",
        "usr/share/vosd/models/objectness/objectness.onnx",
        "usr/share/vosd/models/objectness/objectness-ens4.onnx",
        "etc/vosd/vosd.toml",
        "etc/systemd/system/vosd.service",
        "usr/share/doc/vosd/daemon.md",
        "usr/share/vosd/clients/c/vosd_shm.h",
        "usr/share/vosd/install-manifest",
    ] {
        assert!(d.join(f).is_file(), "{f} not installed");
    }
    // The unit's ExecStart and model directory are what was installed.
    let unit = std::fs::read_to_string(d.join("etc/systemd/system/vosd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/vosd run --config /etc/vosd/vosd.toml"));
    assert!(unit.contains("VOSD_MODEL_DIR=/usr/share/vosd/models"));
    let check = check_installed(d, &d.join("etc/vosd/vosd.toml"));
    assert!(
        check.status.success(),
        "installed config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Unsupervised mode with the objectness head finds the installed head;
    // a head that is not there is named, with what to set.
    let discover = d.join("etc/vosd/discover.toml");
    let installed = std::fs::read_to_string(d.join("etc/vosd/vosd.toml")).unwrap();
    let table = "[discover]\nprompt = \"objectness\"\n";
    std::fs::write(&discover, format!("{installed}\n{table}")).unwrap();
    let check = check_installed(d, &discover);
    assert!(
        check.status.success(),
        "installed config with the objectness prompt: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let missing = "objectness_model = \"/nonexistent/head.onnx\"\n";
    std::fs::write(&discover, format!("{installed}\n{table}{missing}")).unwrap();
    let check = check_installed(d, &discover);
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "a missing head passed the check");
    assert!(
        err.contains("/nonexistent/head.onnx") && err.contains("discover.objectness_model"),
        "{err}"
    );
    std::fs::remove_file(&discover).unwrap();

    // A second install keeps the edited configuration.
    std::fs::write(d.join("etc/vosd/vosd.toml"), "# edited\n").unwrap();
    let out = script(d, &["--binary", env!("CARGO_BIN_EXE_vosd")]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(d.join("etc/vosd/vosd.toml")).unwrap(),
        "# edited\n"
    );
    assert!(d.join("etc/vosd/vosd.toml.new").is_file());

    let out = script(d, &["--uninstall"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = files_under(d);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "directories left");

    // Nothing installed: a clear error.
    let out = script(d, &["--uninstall"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not installed"));
}

#[test]
fn a_missing_binary_is_a_clear_error() {
    let dest = tempfile::tempdir().unwrap();
    let out = script(dest.path(), &["--binary", "/nonexistent/vosd"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vosd not found"), "{err}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

#[test]
fn onnxruntime_library_is_copied_and_the_unit_points_at_it() {
    // A stand-in for the pip wheel's capi folder: the library and a
    // provider library beside it (the script copies files; it does not
    // load them).
    let wheel = tempfile::tempdir().unwrap();
    let capi = wheel.path().join("onnxruntime/capi");
    std::fs::create_dir_all(&capi).unwrap();
    std::fs::write(capi.join("libonnxruntime.so.1.32.0"), b"lib").unwrap();
    std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"p").unwrap();
    std::fs::write(capi.join("__init__.py"), b"").unwrap();

    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let lib = capi.join("libonnxruntime.so.1.32.0");
    let out = script(
        d,
        &[
            "--binary",
            env!("CARGO_BIN_EXE_vosd"),
            "--onnxruntime",
            lib.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = d.join("usr/lib/vosd/onnxruntime");
    assert!(dir.join("libonnxruntime.so.1.32.0").is_file());
    assert!(dir.join("libonnxruntime_providers_shared.so").is_file());
    assert!(!dir.join("__init__.py").exists(), "only the libraries");
    let dropin =
        std::fs::read_to_string(d.join("etc/systemd/system/vosd.service.d/onnxruntime.conf"))
            .unwrap();
    assert!(
        dropin.contains(
            "[Service]\nEnvironment=ORT_DYLIB_PATH=/usr/lib/vosd/onnxruntime/libonnxruntime.so.1.32.0"
        ),
        "{dropin}"
    );

    let out = script(d, &["--uninstall"]);
    assert!(out.status.success());
    let left = files_under(d);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "directories left");

    // A library path that does not exist is refused before anything lands.
    let out = script(
        d,
        &[
            "--binary",
            env!("CARGO_BIN_EXE_vosd"),
            "--onnxruntime",
            "/nonexistent/libonnxruntime.so",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
}
