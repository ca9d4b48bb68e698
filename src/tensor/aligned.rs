//! Float buffers that start on a cache line.
//!
//! A 64-byte vector load from an address that is not a multiple of 64
//! straddles two cache lines and costs two loads. The sparse kernel loads
//! its dense operand's rows at multiples of 16 floats, so with a buffer
//! placed wherever the allocator put it, it ran at half speed about three
//! times in four (docs/PERFORMANCE.md, "Aligned buffers").

use std::ops::{Deref, DerefMut};

/// Bytes per cache line.
const LINE: usize = 64;
/// Floats per cache line.
const LINE_FLOATS: usize = LINE / size_of::<f32>();

/// A resizable `[f32]` whose first element starts on a cache line.
#[derive(Debug, Default)]
pub struct Aligned {
    buf: Vec<f32>,
    /// Where the contents start in `buf`.
    off: usize,
    len: usize,
}

impl Aligned {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Aligned {
        let mut a = Aligned::default();
        a.resize(len);
        a
    }

    /// Grows (with zeros) or shrinks to `len` floats, keeping the contents
    /// before `len`; the buffer is only reallocated to grow.
    pub fn resize(&mut self, len: usize) {
        if self.off + len > self.buf.len() {
            let mut buf = vec![0.0; len + LINE_FLOATS - 1];
            let off = (buf.as_ptr() as usize).wrapping_neg() % LINE / size_of::<f32>();
            buf[off..off + self.len].copy_from_slice(self);
            (self.buf, self.off) = (buf, off);
        } else if len > self.len {
            self.buf[self.off + self.len..self.off + len].fill(0.0);
        }
        self.len = len;
    }
}

impl Clone for Aligned {
    /// A copy, itself aligned (a derived clone could move the contents off
    /// the line).
    fn clone(&self) -> Aligned {
        let mut a = Aligned::zeros(self.len);
        a.copy_from_slice(self);
        a
    }
}

impl From<&[f32]> for Aligned {
    fn from(v: &[f32]) -> Aligned {
        let mut a = Aligned::zeros(v.len());
        a.copy_from_slice(v);
        a
    }
}

impl PartialEq for Aligned {
    fn eq(&self, other: &Aligned) -> bool {
        self[..] == other[..]
    }
}

impl Deref for Aligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// Whether `v` starts on a cache line.
pub fn on_a_line(v: &[f32]) -> bool {
    (v.as_ptr() as usize).is_multiple_of(LINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_keeps_contents_when_resized() {
        let mut a = Aligned::zeros(5);
        assert!(on_a_line(&a));
        a.copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        a.resize(3);
        assert_eq!(&a[..], [1.0, 2.0, 3.0]);
        a.resize(4);
        assert_eq!(
            &a[..],
            [1.0, 2.0, 3.0, 0.0],
            "regrown within the buffer: zeros"
        );
        for len in [100, 1000, 150_528] {
            a.resize(len);
            assert!(on_a_line(&a), "{len}");
            assert_eq!(a.len(), len);
            assert_eq!(&a[..4], [1.0, 2.0, 3.0, 0.0]);
            assert!(a[4..].iter().all(|&v| v == 0.0));
        }
        let b = a.clone();
        assert!(on_a_line(&b));
        assert_eq!(&b[..], &a[..]);
        assert!(Aligned::zeros(0).is_empty());
    }
}
