//! Where the MNIST files come from. An installed binary has no repository
//! beside it, so it looks, in order: `--data`, `$SCRATCHNET_DATA`,
//! `./data/mnist`, the copy bundled with the clone it was built from, then
//! a directory in the user's cache, filled on first use by the downloader.

use super::download::{download, mnist_sources, Progress, MIRRORS};
use anyhow::{bail, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// Names a directory of MNIST files, or the notebook's `mnist.pkl.gz`.
pub const DATA_ENV: &str = "SCRATCHNET_DATA";
/// Mirror base URLs, separated by spaces, used instead of the public ones
/// (a local or institutional copy).
pub const MIRROR_ENV: &str = "SCRATCHNET_MIRROR";

/// Which rule chose the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    WorkingDir,
    Bundled,
    Cache,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Flag => "--data",
            Origin::Env => "$SCRATCHNET_DATA",
            Origin::WorkingDir => "./data/mnist",
            Origin::Bundled => "the copy bundled with the source",
            Origin::Cache => "the user cache",
        })
    }
}

/// The data to read and why it was chosen.
#[derive(Clone, Debug)]
pub struct Located {
    pub path: PathBuf,
    pub origin: Origin,
}

/// The copy in the crate's own directory: present when the binary runs
/// from a clone, gone after `cargo install` from the registry (the package
/// leaves MNIST out).
fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// The user cache's MNIST directory (`~/.cache/scratchnet/mnist` on Linux).
pub fn cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|c| c.join("scratchnet").join("mnist"))
}

/// Whether `dir` holds the four MNIST files (raw or gzipped).
pub fn has_mnist(dir: &Path) -> bool {
    mnist_sources().iter().all(|s| {
        let raw = s.name.trim_end_matches(".gz");
        dir.join(&s.name).is_file() || dir.join(raw).is_file()
    })
}

/// The first place in the order above that holds data (or, for `--data`
/// and `$SCRATCHNET_DATA`, that is named: a wrong path there is an error
/// when read, not a reason to look elsewhere). The cache is the last
/// resort, returned whether or not it is filled yet.
pub fn locate(flag: Option<&Path>) -> Result<Located> {
    let found = |path: PathBuf, origin| Ok(Located { path, origin });
    if let Some(p) = flag {
        return found(p.to_path_buf(), Origin::Flag);
    }
    if let Some(p) = std::env::var_os(DATA_ENV).filter(|p| !p.is_empty()) {
        return found(PathBuf::from(p), Origin::Env);
    }
    let local = PathBuf::from("data/mnist");
    if has_mnist(&local) {
        return found(local, Origin::WorkingDir);
    }
    if has_mnist(&bundled_dir()) {
        return found(bundled_dir(), Origin::Bundled);
    }
    match cache_dir() {
        Some(c) => found(c, Origin::Cache),
        None => bail!(
            "no MNIST data: not in ./data/mnist, and this system has no user cache directory \
             to download it into; give the data's folder (`--data DIR`, or `load_mnist(path)` \
             in Python) or set {DATA_ENV}"
        ),
    }
}

/// [`locate`], then, where that is the cache and it is not filled yet,
/// the download into it (from the mirrors of [`mirrors`]).
pub fn locate_or_fetch(flag: Option<&Path>, progress: &mut dyn Progress) -> Result<Located> {
    let found = locate(flag)?;
    if found.origin != Origin::Cache || has_mnist(&found.path) {
        return Ok(found);
    }
    let mirrors = mirrors(&[]);
    if let Err(e) = download(&found.path, &mnist_sources(), &mirrors, progress) {
        bail!(
            "no MNIST data found (given, ${DATA_ENV}, ./data/mnist), and fetching it into {} \
             failed: {e:#}",
            found.path.display()
        );
    }
    Ok(found)
}

/// Mirror base URLs to try in order, each ending in `/`: `first`, then
/// those of `$SCRATCHNET_MIRROR` if set, else the public ones.
pub fn mirrors(first: &[String]) -> Vec<String> {
    let env = std::env::var(MIRROR_ENV).unwrap_or_default();
    let rest: Vec<String> = match env
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>()
    {
        named if !named.is_empty() => named,
        _ => MIRRORS.iter().map(|m| m.to_string()).collect(),
    };
    first
        .iter()
        .cloned()
        .chain(rest)
        .map(|m| if m.ends_with('/') { m } else { format!("{m}/") })
        .collect()
}
