//! The crate as `cargo install scratchnet` gets it: packaged (without the
//! repository's MNIST), installed into a temporary root, and run from an
//! empty directory, where it fetches MNIST into the user cache from a mirror
//! on 127.0.0.1 on first use.

use crate::common::Mirror;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// crates.io refuses packages over 10 MB.
const CRATES_IO_LIMIT: u64 = 10 * 1000 * 1000;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Packages the crate, unpacks it and installs the binary from the unpacked
/// source; returns the binary. The build reuses `target/install-check`.
fn install(tmp: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = repo.join("target/install-check");
    let cargo = || {
        let mut c = Command::new(env!("CARGO"));
        c.current_dir(repo).arg("--quiet");
        c
    };
    run(cargo()
        .args([
            "package",
            "--no-verify",
            "--allow-dirty",
            "--offline",
            "--target-dir",
        ])
        .arg(&target));
    let version = env!("CARGO_PKG_VERSION");
    let krate = target.join(format!("package/scratchnet-{version}.crate"));
    let size = std::fs::metadata(&krate).unwrap().len();
    assert!(size < CRATES_IO_LIMIT, "the package is {size} bytes");
    // Files stamped now, not with the package's fixed times: a build left
    // in `target` from older sources must not look up to date.
    run(Command::new("tar")
        .args(["--touch", "-xzf"])
        .arg(&krate)
        .arg("-C")
        .arg(tmp));
    let src = tmp.join(format!("scratchnet-{version}"));
    assert!(!src.join("data").exists(), "the package carries no data");
    let root = tmp.join("root");
    run(cargo()
        .args(["install", "--offline", "--locked", "--path"])
        .arg(&src)
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(&target));
    root.join("bin/scratchnet")
}

#[test]
#[ignore = "slow suite, install: a second release build; `.ci/run` runs it"]
fn an_installed_binary_fetches_mnist_into_the_user_cache_on_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = install(tmp.path());
    let files: Vec<(String, Vec<u8>)> = scratchnet::data::download::mnist_sources()
        .into_iter()
        .map(|s| {
            let bytes = std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("data/mnist")
                    .join(&s.name),
            )
            .unwrap();
            (s.name, bytes)
        })
        .collect();
    let mirror = Mirror::start(files);
    // A new user: an empty working directory and home, no settings.
    let (empty, home) = (tmp.path().join("work"), tmp.path().join("home"));
    std::fs::create_dir_all(&empty).unwrap();
    let scratchnet = |home: &Path, mirror: &str, args: &[&str]| {
        Command::new(&bin)
            .args(args)
            .current_dir(&empty)
            .env_clear()
            .env("HOME", home)
            .env("SCRATCHNET_MIRROR", mirror)
            .output()
            .unwrap()
    };
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let good = format!("{}/good/", mirror.base);

    let info = scratchnet(&home, &good, &["info", "--data"]);
    let cache = home.join(".cache/scratchnet/mnist");
    assert!(
        text(&info).contains(&format!("{} (the user cache; empty", cache.display())),
        "{}",
        text(&info)
    );

    let out = scratchnet(&home, &good, &["train", "--epochs", "1", "-q"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text(&out);
    let test: f64 = line
        .split("test ")
        .nth(1)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no test accuracy in {line}"));
    assert!(test >= 0.95, "{line}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("downloaded, checksum ok"));
    assert!(scratchnet::data::locate::has_mnist(&cache));

    // Filled once: later runs read the cache, mirror or not.
    drop(mirror);
    let info = scratchnet(&home, "http://127.0.0.1:9/", &["info", "--data"]);
    assert!(
        text(&info).contains("the user cache; present"),
        "{}",
        text(&info)
    );
    let out = scratchnet(
        &home,
        "http://127.0.0.1:9/",
        &["eval", "--model", "none.safetensors"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("none.safetensors"));

    // No data and no reachable mirror: an error that says what to do.
    let out = scratchnet(
        &tmp.path().join("home2"),
        "http://127.0.0.1:9/",
        &["train", "--epochs", "1"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in [
        "no MNIST data found",
        "scratchnet download --dest DIR",
        "SCRATCHNET_MIRROR",
    ] {
        assert!(err.contains(want), "expected `{want}` in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}
