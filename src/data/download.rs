//! Fetching the MNIST files from public mirrors.
//!
//! Each file is streamed to a temporary file beside its destination while the
//! MD5 of its decompressed content is computed; only a file whose content
//! matches the canonical checksum is renamed into place, so an interrupted
//! or corrupt download never sits under the final name. On any error the
//! next mirror is tried. The content is checked, not the gzip wrapper, so a
//! mirror that compressed the same files anew serves as well.

use anyhow::{bail, Context, Result};
use flate2::write::GzDecoder;
use md5::{Digest, Md5};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A gzipped file to fetch and the MD5 of its decompressed content.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub md5: String,
}

/// The four MNIST files, with the MD5 checksums of the canonical
/// (decompressed) IDX files.
pub fn mnist_sources() -> Vec<Source> {
    [
        (
            "train-images-idx3-ubyte.gz",
            "6bbc9ace898e44ae57da46a324031adb",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "a25bea736e30d166cdddb491f175f624",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "2646ac647ad5339dbf082846283269ea",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "27ae3e4e09519cfbb04c329615203637",
        ),
    ]
    .iter()
    .map(|(n, m)| Source {
        name: n.to_string(),
        md5: m.to_string(),
    })
    .collect()
}

/// Public mirrors, tried in order.
pub const MIRRORS: &[&str] = &[
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Progress events for a display. A mirror's failure is reported to
/// `failed` as it happens; where every mirror fails, the error lists each
/// once, so a display need not show them.
pub trait Progress {
    fn start(&mut self, _name: &str, _url: &str, _len: Option<u64>) {}
    fn advance(&mut self, _bytes: u64) {}
    fn failed(&mut self, _url: &str, _why: &str) {}
    fn done(&mut self, _name: &str, _skipped: bool) {}
}

/// A [`Progress`] that shows nothing.
pub struct Silent;
impl Progress for Silent {}

/// Downloads every source into `dest` (created if needed), skipping files
/// already there with the right checksum. Returns the paths.
pub fn download(
    dest: &Path,
    sources: &[Source],
    mirrors: &[String],
    progress: &mut dyn Progress,
) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dest)
        .with_context(|| format!("--dest {}: cannot create directory", dest.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .timeout_connect(Some(Duration::from_secs(15)))
        .build()
        .into();
    let mut paths = Vec::new();
    for src in sources {
        let path = dest.join(&src.name);
        if path.is_file() && md5_content(&path).is_ok_and(|m| m == src.md5) {
            progress.done(&src.name, true);
            paths.push(path);
            continue;
        }
        let mut errors = Vec::new();
        for mirror in mirrors {
            let url = format!("{}{}", mirror, src.name);
            match fetch(&agent, &url, &path, &src.md5, progress) {
                Ok(()) => break,
                Err(e) => {
                    progress.failed(&url, &format!("{e:#}"));
                    errors.push(format!("  {url}: {e:#}"));
                }
            }
        }
        if errors.len() == mirrors.len() {
            bail!(
                "could not fetch {} from any mirror:\n{}\nwhat to do: check the network (and any proxy); or name a mirror that has the files with --mirror URL (or $SCRATCHNET_MIRROR); or, on a machine with network, `scratchnet download --dest DIR`, copy DIR here and give it as the data's folder (`--data DIR`, or `load_mnist(path)` in Python)",
                src.name,
                errors.join("\n")
            );
        }
        progress.done(&src.name, false);
        paths.push(path);
    }
    Ok(paths)
}

fn fetch(
    agent: &ureq::Agent,
    url: &str,
    path: &Path,
    md5: &str,
    progress: &mut dyn Progress,
) -> Result<()> {
    let mut resp = agent.get(url).call().context("request failed")?;
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    progress.start(
        &path.file_name().unwrap_or_default().to_string_lossy(),
        url,
        len,
    );
    let part = path.with_file_name(format!(
        ".{}.part-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut out =
            File::create(&part).with_context(|| format!("{}: cannot create", part.display()))?;
        // The bytes as they come go to the file, and through a gzip
        // decoder to the checksum.
        let mut content = GzDecoder::new(Md5::new());
        let mut body = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut buf).context("download interrupted")?;
            if n == 0 {
                break;
            }
            content
                .write_all(&buf[..n])
                .context("corrupt: not the expected gzip data")?;
            out.write_all(&buf[..n])
                .with_context(|| format!("{}: cannot write", part.display()))?;
            progress.advance(n as u64);
        }
        let hasher = content
            .finish()
            .context("corrupt: not the expected gzip data")?;
        let got = super::hex(&hasher.finalize());
        if got != md5 {
            bail!("checksum mismatch: MD5 {got}, expected {md5}");
        }
        out.sync_all()?;
        fs::rename(&part, path)
            .with_context(|| format!("{}: cannot move into place", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result
}

/// Hex MD5 of a file's content, decompressed if it is gzipped.
pub fn md5_content(path: &Path) -> Result<String> {
    let (mut f, _) = super::open_maybe_gz(path)?;
    let mut h = Md5::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(super::hex(&h.finalize()))
}
