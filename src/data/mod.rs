//! Loading MNIST-format data: IDX files (raw or gzip) or the notebook's pickle,
//! split into train / validation / test.

pub mod augment;
pub mod batch;
pub mod distort;
pub mod download;
pub mod locate;

pub mod idx;
pub mod image_prep;
pub mod pickle;
pub mod pixels;

use anyhow::{bail, Context, Result};
use pixels::Pixels;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Pixel scale of both sources: the notebook's file stores byte / 256.
pub const PIXEL_SCALE: f32 = 1.0 / 256.0;

/// Number of classes; labels must lie in `0..CLASSES`.
pub const CLASSES: usize = 10;

/// A set of images (row-major, one image per row) and their labels.
#[derive(Clone, Debug, Default)]
pub struct Split {
    pub images: Pixels,
    pub labels: Vec<u8>,
    /// Pixels per image.
    pub features: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> Cow<'_, [f32]> {
        self.images
            .range(i * self.features..(i + 1) * self.features)
    }

    /// Moves rows `at..` into a new split (carving validation off training
    /// without copying the rest).
    fn split_off(&mut self, at: usize) -> Split {
        Split {
            images: self.images.split_off(at * self.features),
            labels: self.labels.split_off(at),
            features: self.features,
        }
    }
}

/// The three splits, with where they came from.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: Split,
    pub val: Split,
    pub test: Split,
    /// Image height and width.
    pub shape: (usize, usize),
    /// SHA-256 of the files read, in order, so a saved model can name its data.
    pub checksums: Vec<(String, String)>,
}

impl Dataset {
    /// Loads `path`: a directory of IDX files or a `.pkl` / `.pkl.gz` file.
    ///
    /// For IDX data the last `val_size` training images become the validation
    /// split (the notebook's file made its split the same way); a pickle
    /// carries its own split, so `val_size` must be `None` or match it.
    pub fn load(path: &Path, val_size: Option<usize>) -> Result<Dataset> {
        if path.is_dir() {
            Self::load_idx_dir(path, val_size.unwrap_or(10_000))
        } else if path.is_file() {
            let ds = pickle::load_mnist_pickle(path)?;
            if let Some(v) = val_size {
                if v != ds.val.len() {
                    bail!("{}: a pickle carries its own validation split of {} images; --val-size {v} cannot change it", path.display(), ds.val.len());
                }
            }
            Ok(ds)
        } else {
            bail!("{}: no such file or directory (expected a directory of MNIST IDX files or a .pkl.gz file)", path.display())
        }
    }

    fn load_idx_dir(dir: &Path, val_size: usize) -> Result<Dataset> {
        let find = |stem: &str| find_idx_file(dir, stem);
        let train_images = find("train-images-idx3-ubyte")?;
        let train_labels = find("train-labels-idx1-ubyte")?;
        let test_images = find("t10k-images-idx3-ubyte")?;
        let test_labels = find("t10k-labels-idx1-ubyte")?;
        let (mut train, shape) = idx::read_split(&train_images, &train_labels)?;
        let (test, test_shape) = idx::read_split(&test_images, &test_labels)?;
        if shape != test_shape {
            bail!(
                "{}: test images are {}x{} but training images are {}x{}",
                test_images.display(),
                test_shape.0,
                test_shape.1,
                shape.0,
                shape.1
            );
        }
        if val_size >= train.len() {
            bail!(
                "a validation split of {val_size} images leaves none to train on ({} in {})",
                train.len(),
                train_images.display()
            );
        }
        let cut = train.len() - val_size;
        let checksums = [&train_images, &train_labels, &test_images, &test_labels]
            .iter()
            .map(|p| Ok((file_name(p), sha256_file(p)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Dataset {
            val: train.split_off(cut),
            train,
            test,
            shape,
            checksums,
        })
    }

    /// Pixels per image.
    pub fn features(&self) -> usize {
        self.shape.0 * self.shape.1
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Finds `stem`, `stem.gz`, or the same with the last '-' written as '.'
/// (both spellings circulate), in `dir`.
fn find_idx_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    for name in [
        stem.to_string(),
        format!("{stem}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{}: missing {stem}[.gz] (expected the four MNIST IDX files; `scratchnet download --dest {}` fetches them)", dir.display(), dir.display())
}

/// Opens a file, transparently decompressing it if its first bytes are the
/// gzip magic (the content decides, not the name).
pub fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut f, &mut magic)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let whole = BufReader::with_capacity(1 << 20, head.chain(f));
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok((
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::read::MultiGzDecoder::new(whole),
            )),
            true,
        ))
    } else {
        Ok((Box::new(whole), false))
    }
}

/// Like `read_exact`, but returns how many bytes there were if fewer.
pub fn read_up_to<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads exactly `len` bytes. At most 256 MB is reserved before data arrives
/// (and a reservation costs nothing until written), so a header that lies
/// about a huge size cannot make us allocate it.
pub fn read_exact_len<R: Read + ?Sized>(r: &mut R, len: usize) -> std::io::Result<Option<Vec<u8>>> {
    // Growing a 47 MB buffer by doubling cost copies and page faults.
    let mut v = Vec::with_capacity(len.min(1 << 28));
    r.take(len as u64).read_to_end(&mut v)?;
    Ok((v.len() == len).then_some(v))
}

/// Hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
