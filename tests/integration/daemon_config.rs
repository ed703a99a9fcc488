//! `vosd run` refuses bad configurations with a message that names the file
//! and the key, and exit status 1; the shipped configurations are valid.

use crate::daemon_support::*;

fn run_config(text: &str, check: bool) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), text);
    let mut cmd = crate::common::target_command(vosd_bin());
    cmd.args(["run", "--config"]).arg(&path);
    if check {
        cmd.arg("--check");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn unknown_keys_are_named() {
    let good = config_text("/vosd-test-cfg", 15.0, 10, "");
    for (from, to, key) in [
        ("seed = 1", "seed = 1\nsed = 2", "sed"),
        ("mode = 0o600", "mode = 0o600\nmodes = 1", "modes"),
        ("threads = 2", "threads = 2\nthread = 2", "thread"),
        ("[pipeline]", "[pipeline]\nframe_pools = 3", "frame_pools"),
        ("[pipeline]", "[pipeline]\n[controls]\nx = 1", "controls"),
        (
            "[pipeline]",
            "[pipeline]\n[control]\nsockett = \"/a\"",
            "sockett",
        ),
    ] {
        let (code, err) = run_config(&good.replace(from, to), false);
        assert_eq!(code, 1, "{key}: {err}");
        assert!(
            err.contains(key) && err.contains("vosd.toml"),
            "{key}: {err}"
        );
    }
}

#[test]
fn bad_values_are_named() {
    let good = config_text("/vosd-test-cfg", 15.0, 10, "");
    for (from, to, key) in [
        ("fps = 15", "fps = 0", "source.fps"),
        // A mistyped value inside the tagged [source] table is reported at the table.
        ("fps = 15", "fps = \"x\"", "source.fps: invalid type"),
        ("objects = 3", "objects = 5", "source.objects"),
        ("mode = 0o600", "mode = 0o7777", "publish.mode"),
        ("slots = 64", "slots = 1", "publish.slots"),
        ("max_objects = 8", "max_objects = 2", "publish.max_objects"),
        ("[engine]\nsize = [", "[engine]\nsize = [1, ", "engine.size"),
        (
            "stats_interval_s = 1",
            "stats_interval_s = -1",
            "pipeline.stats_interval_s",
        ),
        ("kind = \"synthetic\"", "kind = \"camera\"", "camera"),
    ] {
        let (code, err) = run_config(&good.replace(from, to), true);
        assert_eq!(code, 1, "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn unusable_sources_are_explained() {
    let frames = r#"
[source]
kind = "frames"
path = "/nonexistent/frames"
[publish]
name = "/vosd-test-cfg-frames"
"#;
    let (code, err) = run_config(frames, false);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/nonexistent/frames") && err.contains("source.path"),
        "{err}"
    );
    let cam = "[source]\nkind = \"v4l2\"\ndevice = \"/dev/video99\"\n[publish]\nname = \"/vosd-test-cfg-cam\"\n";
    let (code, err) = run_config(cam, false);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/dev/video99"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let out = crate::common::target_command(vosd_bin())
        .args(["run", "--config", "/nonexistent/vosd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vosd.toml"), "{err}");
}

#[test]
fn shipped_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        checked += 1;
        let file = path.display();
        let out = crate::common::target_command(vosd_bin())
            .args(["run", "--check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(checked >= 3, "only {checked} configs in {}", dir.display());
}

#[test]
fn missing_tables_are_named() {
    // Every table is optional in the file, but `vosd run` needs these two.
    let (code, err) = run_config("[source]\nkind = \"synthetic\"\n", true);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("vosd.toml: publish: the table is missing"),
        "{err}"
    );
    let (code, err) = run_config("[publish]\nname = \"/vosd-test-cfg-nosrc\"\n", false);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("vosd.toml: source: the table is missing"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_table_and_key() {
    let good = config_text("/vosd-test-cfg", 15.0, 10, "");
    for (from, to, want) in [
        (
            "threads = 2",
            "threads = 2\ntemperature = 0",
            "vosd.toml: engine.temperature: must be a positive number",
        ),
        (
            "objects = 3",
            "objects = 0",
            "vosd.toml: source.objects: 0 is not within 1..=3",
        ),
        (
            "slots = 64",
            "slots = 2000",
            "vosd.toml: publish.slots: 2000 is not within 2..=1024",
        ),
        (
            "name = \"/vosd-test-cfg\"",
            "name = \"vosd-test-cfg\"",
            "vosd.toml: publish.name: \"vosd-test-cfg\" is not a shared-memory name",
        ),
        (
            "[pipeline]",
            "[pipeline]\nlost_after_s = 0",
            "vosd.toml: pipeline.lost_after_s: must be within 0.1..=3600 seconds",
        ),
        (
            "[pipeline]",
            "[control]\nidle_timeout_s = 0\n[pipeline]",
            "vosd.toml: control.idle_timeout_s: must be within 1..=86400 seconds",
        ),
    ] {
        let (code, err) = run_config(&good.replace(from, to), true);
        assert_eq!(code, 1, "{want}: {err}");
        assert!(err.contains(want), "{want}: {err}");
    }
}
