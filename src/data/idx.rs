//! IDX files (LeCun's MNIST format): a big-endian header, then u8 data.
//!
//! Images have magic 0x00000803 (u8, 3 dims: count, rows, cols); labels
//! 0x00000801 (u8, 1 dim). The header's claimed size is checked against the
//! file before any buffer of that size exists.

use super::pixels::Pixels;
use super::{open_maybe_gz, read_exact_len, read_up_to, Split, CLASSES};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::Path;

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// A parsed IDX file: its dimensions and raw u8 payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file (raw or gzip) that must carry `magic`.
pub fn read_idx(path: &Path, magic: u32) -> Result<Idx> {
    let (mut r, gz) = open_maybe_gz(path)?;
    let file_len = if gz {
        None
    } else {
        Some(std::fs::metadata(path)?.len())
    };
    parse_idx(&mut r, magic, file_len).with_context(|| format!("{}", path.display()))
}

/// Parses IDX from a reader; `file_len`, when known, is checked against the header.
pub fn parse_idx(r: &mut dyn Read, magic: u32, file_len: Option<u64>) -> Result<Idx> {
    let mut head = [0u8; 4];
    if read_up_to(r, &mut head).context("cannot read the IDX header (corrupt gzip?)")? < 4 {
        bail!("truncated: shorter than the 4-byte IDX magic");
    }
    let found = u32::from_be_bytes(head);
    if found != magic {
        bail!(
            "wrong magic number 0x{found:08x}, expected 0x{magic:08x} ({})",
            describe_magic(magic)
        );
    }
    let ndims = (magic & 0xff) as usize;
    let mut dims = Vec::with_capacity(ndims);
    for _ in 0..ndims {
        if read_up_to(r, &mut head).context("cannot read the IDX header (corrupt gzip?)")? < 4 {
            bail!("truncated inside the IDX header");
        }
        dims.push(u32::from_be_bytes(head) as usize);
    }
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("header dimensions {dims:?} overflow"))?;
    let header = 4 + 4 * ndims as u64;
    if let Some(file_len) = file_len {
        if file_len != header + len as u64 {
            bail!(
                "header dimensions {dims:?} need {} bytes of data but the file holds {}",
                len,
                file_len.saturating_sub(header)
            );
        }
    }
    let data = read_exact_len(r, len)
        .context("cannot read the IDX data (corrupt gzip?)")?
        .with_context(|| {
            format!("truncated: header dimensions {dims:?} need {len} bytes of data")
        })?;
    if r.read(&mut head)
        .context("cannot read past the IDX data (corrupt gzip?)")?
        != 0
    {
        bail!("unexpected bytes after the {len} bytes of data that header dimensions {dims:?} describe");
    }
    Ok(Idx { dims, data })
}

fn describe_magic(magic: u32) -> &'static str {
    match magic {
        IMAGES_MAGIC => "an IDX image file: u8, 3 dimensions",
        LABELS_MAGIC => "an IDX label file: u8, 1 dimension",
        _ => "IDX",
    }
}

/// Reads an image file and its label file into a [`Split`] and the image shape.
pub fn read_split(images: &Path, labels: &Path) -> Result<(Split, (usize, usize))> {
    let img = read_idx(images, IMAGES_MAGIC)?;
    let lab = read_idx(labels, LABELS_MAGIC)?;
    let (n, rows, cols) = (img.dims[0], img.dims[1], img.dims[2]);
    if lab.dims[0] != n {
        bail!(
            "{} holds {} labels but {} holds {n} images",
            labels.display(),
            lab.dims[0],
            images.display()
        );
    }
    if let Some((i, &l)) = lab
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= CLASSES)
    {
        bail!(
            "{}: label {l} at index {i} is not a digit 0-9",
            labels.display()
        );
    }
    Ok((
        Split {
            images: Pixels::Bytes(img.data),
            labels: lab.data,
            features: rows * cols,
        },
        (rows, cols),
    ))
}

/// Writes an IDX file (raw); used by tests and tools that export data.
pub fn write_idx(
    w: &mut impl Write,
    magic: u32,
    dims: &[usize],
    data: &[u8],
) -> std::io::Result<()> {
    w.write_all(&magic.to_be_bytes())?;
    for &d in dims {
        w.write_all(&(d as u32).to_be_bytes())?;
    }
    w.write_all(data)
}
