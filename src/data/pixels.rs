//! A split's pixels as they were read: MNIST's bytes, each standing for
//! the float32 `byte / 256` the notebook used (a quarter of the memory, and
//! no fresh pages to fill with floats), or any float32 values.

use super::PIXEL_SCALE;
use crate::tensor::sparse::SparseRows;
use std::borrow::Cow;
use std::ops::Range;

/// Images, row-major, one image per row.
#[derive(Clone, Debug, PartialEq)]
pub enum Pixels {
    /// Byte `b` is the pixel `b / 256` ([`PIXEL_SCALE`]), exactly.
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
}

/// A borrowed [`Pixels`], or float32 pixels held elsewhere.
#[derive(Clone, Copy, Debug)]
pub enum PixelSlice<'a> {
    Bytes(&'a [u8]),
    Floats(&'a [f32]),
}

impl Default for Pixels {
    fn default() -> Pixels {
        Pixels::Floats(Vec::new())
    }
}

impl From<Vec<f32>> for Pixels {
    fn from(v: Vec<f32>) -> Pixels {
        Pixels::Floats(v)
    }
}

impl FromIterator<f32> for Pixels {
    fn from_iter<I: IntoIterator<Item = f32>>(values: I) -> Pixels {
        Pixels::Floats(values.into_iter().collect())
    }
}

impl<'a> From<&'a [f32]> for PixelSlice<'a> {
    fn from(v: &'a [f32]) -> PixelSlice<'a> {
        PixelSlice::Floats(v)
    }
}

/// The pixel a byte stands for.
fn pixel(b: u8) -> f32 {
    b as f32 * PIXEL_SCALE
}

impl Pixels {
    /// `values` as bytes where every one is exactly a byte / 256 (the
    /// notebook's pickle holds MNIST so), else as they are.
    pub fn packed(values: Vec<f32>) -> Pixels {
        // Saturating, so 1.0, -0.0, NaN and subnormals fail the round trip.
        let byte = |v: f32| (v * 256.0) as u8;
        match values
            .iter()
            .all(|&v| pixel(byte(v)).to_bits() == v.to_bits())
        {
            true => Pixels::Bytes(values.iter().map(|&v| byte(v)).collect()),
            false => Pixels::Floats(values),
        }
    }

    pub fn view(&self) -> PixelSlice<'_> {
        match self {
            Pixels::Bytes(b) => PixelSlice::Bytes(b),
            Pixels::Floats(f) => PixelSlice::Floats(f),
        }
    }

    /// Pixels in all.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every pixel as float32: borrowed where they are stored so.
    pub fn floats(&self) -> Cow<'_, [f32]> {
        self.view().floats()
    }

    /// Pixels `r` as float32.
    pub fn range(&self, r: Range<usize>) -> Cow<'_, [f32]> {
        self.view().slice(r).floats()
    }

    /// Pixels `r` as float32: the stored ones, or converted into `buf`.
    pub fn range_in<'a>(&'a self, r: Range<usize>, buf: &'a mut Vec<f32>) -> &'a [f32] {
        match self {
            Pixels::Floats(f) => &f[r],
            Pixels::Bytes(b) => {
                buf.clear();
                buf.extend(b[r].iter().map(|&b| pixel(b)));
                buf
            }
        }
    }

    /// Moves pixels `at..` into new pixels.
    pub fn split_off(&mut self, at: usize) -> Pixels {
        match self {
            Pixels::Bytes(b) => Pixels::Bytes(b.split_off(at)),
            Pixels::Floats(f) => Pixels::Floats(f.split_off(at)),
        }
    }
}

impl<'a> PixelSlice<'a> {
    pub fn len(&self) -> usize {
        match self {
            PixelSlice::Bytes(b) => b.len(),
            PixelSlice::Floats(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels `r`.
    pub fn slice(&self, r: Range<usize>) -> PixelSlice<'a> {
        match self {
            PixelSlice::Bytes(b) => PixelSlice::Bytes(&b[r]),
            PixelSlice::Floats(f) => PixelSlice::Floats(&f[r]),
        }
    }

    /// Every pixel as float32: borrowed where they are stored so.
    pub fn floats(&self) -> Cow<'a, [f32]> {
        match *self {
            PixelSlice::Bytes(b) => Cow::Owned(b.iter().map(|&b| pixel(b)).collect()),
            PixelSlice::Floats(f) => Cow::Borrowed(f),
        }
    }

    /// Pixels that are not zero.
    pub fn nonzero(&self) -> usize {
        match self {
            PixelSlice::Bytes(b) => b.iter().filter(|&&b| b != 0).count(),
            PixelSlice::Floats(f) => f.iter().filter(|&&v| v != 0.0).count(),
        }
    }

    /// The `cols`-wide rows compressed, where few enough pixels are
    /// non-zero for that to pay (see [`SparseRows::compress_if_sparse`]).
    pub fn compress_if_sparse(&self, cols: usize) -> Option<SparseRows> {
        match *self {
            PixelSlice::Bytes(b) => SparseRows::compress_if_sparse(b, cols, pixel),
            PixelSlice::Floats(f) => SparseRows::compress_if_sparse(f, cols, |v| v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_stand_for_the_notebooks_floats() {
        let floats: Vec<f32> = (0..=255u8).map(|b| b as f32 / 256.0).collect();
        let packed = Pixels::packed(floats.clone());
        assert!(matches!(packed, Pixels::Bytes(_)));
        assert_eq!(packed.floats()[..], floats);
        assert_eq!(packed.range(3..9)[..], floats[3..9]);
        let mut buf = Vec::new();
        assert_eq!(packed.range_in(250..256, &mut buf), &floats[250..]);
        assert_eq!(packed.view().nonzero(), 255);
        let sparse: Vec<f32> = (0..512)
            .map(|i| (i % 7 == 0) as u8 as f32 * floats[i % 256])
            .collect();
        let bytes = Pixels::packed(sparse.clone());
        let c = bytes
            .view()
            .compress_if_sparse(16)
            .expect("a seventh non-zero");
        assert_eq!(c.view().to_dense(), sparse);
    }

    #[test]
    fn other_values_stay_floats() {
        for odd in [
            0.3,
            1.0,
            -1.0 / 256.0,
            -0.0,
            f32::NAN,
            1e-30,
            f32::from_bits(1),
            f32::INFINITY,
        ] {
            let p = Pixels::packed(vec![0.5, odd]);
            assert!(matches!(p, Pixels::Floats(_)), "{odd} packed");
        }
    }
}
