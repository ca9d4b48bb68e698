//! Writing files so that a crash, a full disk or a kill never leaves a
//! truncated file under the final name, and checking, before any work,
//! that an output can be written at all.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over the target, fsync the directory. On any
/// error the previous file at `path`, if there was one, is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| {
            format!(
                "{}: cannot write (the previous file, if any, is unchanged)",
                path.display()
            )
        });
    }
    Ok(())
}

/// Checks, before any work, that the file output of option `option` can be
/// written at `path`: not a directory, its folder there (created if
/// missing) and writable. Errors name the option and the path; a folder
/// given for the file gets `example` in it as the suggestion.
pub fn check_output_file(option: &str, path: &Path, example: &str) -> Result<()> {
    let shown = path.display();
    let names_a_folder = path
        .as_os_str()
        .to_string_lossy()
        .ends_with(std::path::MAIN_SEPARATOR);
    if path.is_dir() || names_a_folder {
        bail!(
            "{option} {shown}: is a directory; give a file name (e.g. {})",
            path.join(example).display()
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    writable_folder(dir).with_context(|| format!("{option} {shown}"))
}

/// Checks that option `option` names a folder files can be written in
/// (created if missing). Errors name the option and the path.
pub fn check_folder(option: &str, dir: &Path) -> Result<()> {
    writable_folder(dir).with_context(|| format!("{option} {}", dir.display()))
}

/// Checks that the output of option `option` is not named for the other
/// file format: models are safetensors files (`--save`, `--checkpoint`),
/// exports are ONNX files (`--onnx`).
pub fn check_extension(option: &str, path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match (option, ext.as_deref()) {
        ("--onnx", Some("safetensors")) => bail!(
            "--onnx {}: an ONNX file is written here, but the name says safetensors; give a name ending in .onnx",
            path.display()
        ),
        ("--save" | "--checkpoint", Some("onnx")) => bail!(
            "{option} {}: models are saved as safetensors, but the name says ONNX; give a name ending in .safetensors (for ONNX: `scratchnet export MODEL --onnx {}`)",
            path.display(),
            path.display()
        ),
        _ => Ok(()),
    }
}

/// Checks, before any work, that files can be written in folder `dir` (the
/// output of option `option`), creating it if missing.
pub fn check_output_dir(option: &str, dir: &Path) -> Result<()> {
    writable_folder(dir).with_context(|| format!("{option} {}", dir.display()))
}

/// `dir` is a folder (created if missing) in which a file can be made:
/// permissions, a read-only disk.
fn writable_folder(dir: &Path) -> Result<()> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        bail!("{shown} is not a folder");
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create the folder {shown}"))?;
    let probe = dir.join(format!(".scratchnet-probe-{}", std::process::id()));
    let made = File::create(&probe).and_then(|_| fs::remove_file(&probe));
    made.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::PermissionDenied => "you may not write there",
            std::io::ErrorKind::ReadOnlyFilesystem => "it is on a read-only disk",
            // The folder is there, yet a file cannot be made in it: /proc, /sys.
            std::io::ErrorKind::NotFound => "it takes no new files (a system folder?)",
            _ => "the system refused",
        };
        anyhow::anyhow!(
            "cannot write in the folder {shown}: {why} ({e}); give a path in a folder you can write to"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn outputs_are_checked_before_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!(
            "{:#}",
            check_output_file("--save", dir.path(), "m.safetensors").unwrap_err()
        );
        let suggested = dir.path().join("m.safetensors");
        assert!(e.contains("--save") && e.contains("is a directory"), "{e}");
        assert!(e.contains(&suggested.display().to_string()), "{e}");
        let e = format!(
            "{:#}",
            check_output_file("--save", Path::new("no/such/"), "m").unwrap_err()
        );
        assert!(e.contains("is a directory"), "{e}");
        // A missing folder is created; nothing else is left behind.
        let deep = dir.path().join("a/b/m.safetensors");
        check_output_file("--save", &deep, "m").unwrap();
        assert!(dir.path().join("a/b").is_dir());
        assert_eq!(fs::read_dir(dir.path().join("a/b")).unwrap().count(), 0);
        // A file where a folder should be.
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let e = format!("{:#}", check_output_dir("--out", &file).unwrap_err());
        assert!(e.contains("--out") && e.contains("not a folder"), "{e}");
        let e = format!(
            "{:#}",
            check_output_file("--save", &file.join("m"), "m").unwrap_err()
        );
        assert!(e.contains("--save") && e.contains("not a folder"), "{e}");
    }

    #[test]
    fn failure_names_the_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("m.bin");
        let e = format!("{:#}", write_atomic(&p, b"x").unwrap_err());
        assert!(e.contains("missing-dir"), "{e}");
    }
}
