//! Comparing computed values with a reference, as the tests do: the worst
//! relative difference over two lists, where it is, and both values there.

/// The worst relative difference of two lists (see [`worst_relative`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Worst {
    pub diff: f64,
    pub at: usize,
    pub a: f64,
    pub b: f64,
}

/// The largest `|a - b| / (floor + max(|a|, |b|))` over two lists of the
/// same length (`floor` keeps values near zero from counting as far apart:
/// 0 for a plain relative difference), with its index and values.
pub fn worst_relative<A, B>(a: &[A], b: &[B], floor: f64) -> Worst
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    assert_eq!(a.len(), b.len(), "the lists differ in length");
    let mut worst = Worst {
        diff: 0.0,
        at: 0,
        a: f64::NAN,
        b: f64::NAN,
    };
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let (x, y): (f64, f64) = (x.into(), y.into());
        let diff = (x - y).abs() / (floor + x.abs().max(y.abs()));
        // NaN anywhere is the worst there is.
        if diff > worst.diff || diff.is_nan() || i == 0 {
            worst = Worst {
                diff,
                at: i,
                a: x,
                b: y,
            };
            if diff.is_nan() {
                break;
            }
        }
    }
    worst
}

/// Prints the worst relative difference of `a` against `b` and panics,
/// naming `what`, where it exceeds `tol` (or is NaN).
pub fn assert_close<A, B>(what: &str, a: &[A], b: &[B], floor: f64, tol: f64)
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    let w = worst_relative(a, b, floor);
    println!(
        "{what}: worst relative difference {:.2e} at {} ({} vs {})",
        w.diff, w.at, w.a, w.b
    );
    assert!(
        w.diff <= tol,
        "{what}: {} vs {} at {}: relative difference {:.2e} over {tol:.0e}",
        w.a,
        w.b,
        w.at,
        w.diff
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_worst_and_counts_nan_as_worst() {
        let w = worst_relative(&[1.0f32, 2.0, 4.0], &[1.0f64, 2.2, 4.0], 0.0);
        assert_eq!(w.at, 1);
        assert!((w.diff - 0.2 / 2.2).abs() < 1e-6, "{w:?}");
        let w = worst_relative(&[1.0f32, f32::NAN, 5.0], &[1.0f32, 1.0, 9.0], 1.0);
        assert!(w.diff.is_nan() && w.at == 1, "{w:?}");
        // A floor of 1 makes differences near zero absolute ones.
        let w = worst_relative(&[1e-9f64], &[-1e-9f64], 1.0);
        assert!(w.diff < 1e-8, "{w:?}");
    }
}
