//! numpy arrays in, checked: images of uint8, float32 or float64 shaped
//! (N, H·W) or (N, H, W), labels of any integer type in 0..9. Errors name
//! the argument and what was expected. Arrays are read in logical order,
//! so non-contiguous ones work (they are copied once, as all are).

use numpy::{Element, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use scratchnet::data::{CLASSES, PIXEL_SCALE};

/// Images read from an array.
pub struct Images {
    pub pixels: Vec<f32>,
    pub count: usize,
    pub features: usize,
    /// Height and width, for shifts and distortions.
    pub shape: (usize, usize),
}

/// The array's values in logical order, if its dtype is `T`.
fn values<T: Element + Copy>(a: &Bound<'_, PyAny>) -> Option<Vec<T>> {
    let a = a.extract::<PyReadonlyArrayDyn<'_, T>>().ok()?;
    Some(a.as_array().iter().copied().collect())
}

/// The array's values widened, if its dtype is the integer type `T`.
fn ints<T: Element + Copy + Into<i128>>(a: &Bound<'_, PyAny>) -> Option<Vec<i128>> {
    values::<T>(a).map(|v| v.into_iter().map(Into::into).collect())
}

fn dtype_error(name: &str, a: &Bound<'_, PyAny>, want: &str) -> PyErr {
    let got = match a.cast::<PyUntypedArray>() {
        Ok(u) => format!("an array of {}", u.dtype()),
        Err(_) => a
            .get_type()
            .name()
            .map_or("something else".into(), |n| n.to_string()),
    };
    PyTypeError::new_err(format!(
        "{name}: expected a numpy array of {want}, got {got}"
    ))
}

/// Reads `name`, an array of images.
pub fn images(name: &str, a: &Bound<'_, PyAny>) -> PyResult<Images> {
    let want = "uint8, float32 or float64 images";
    let dims: Vec<usize> = a
        .cast::<PyUntypedArray>()
        .map_err(|_| dtype_error(name, a, want))?
        .shape()
        .to_vec();
    let (count, shape) = match dims[..] {
        [n, h, w] => (n, (h, w)),
        [n, f] => {
            let side = (f as f64).sqrt().round() as usize;
            if side * side != f {
                return Err(PyValueError::new_err(format!(
                    "{name}: {f} pixels per image is not a square; pass the images shaped (N, H, W)"
                )));
            }
            (n, (side, side))
        }
        _ => {
            return Err(PyValueError::new_err(format!(
                "{name}: expected shape (N, 784) or (N, 28, 28), got {dims:?}"
            )))
        }
    };
    let features = shape.0 * shape.1;
    if count == 0 || features == 0 {
        return Err(PyValueError::new_err(format!(
            "{name}: no images (shape {dims:?})"
        )));
    }
    let pixels = if let Some(v) = values::<u8>(a) {
        v.into_iter().map(|b| b as f32 * PIXEL_SCALE).collect()
    } else if let Some(v) = values::<f32>(a) {
        v
    } else if let Some(v) = values::<f64>(a) {
        v.into_iter().map(|x| x as f32).collect()
    } else {
        return Err(dtype_error(name, a, want));
    };
    if let Some(k) = pixels.iter().position(|v| !v.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "{name}: image {}, pixel {} is {} (expected finite values)",
            k / features,
            k % features,
            pixels[k]
        )));
    }
    Ok(Images {
        pixels,
        count,
        features,
        shape,
    })
}

/// Reads `name`, `count` labels of any integer type, each a class.
pub fn labels(name: &str, a: &Bound<'_, PyAny>, count: usize) -> PyResult<Vec<u8>> {
    let want = "integer labels";
    let dims = a
        .cast::<PyUntypedArray>()
        .map_err(|_| dtype_error(name, a, want))?
        .shape()
        .to_vec();
    if dims.len() != 1 {
        return Err(PyValueError::new_err(format!(
            "{name}: expected shape (N,), got {dims:?}"
        )));
    }
    let v = ints::<i64>(a)
        .or_else(|| ints::<u8>(a))
        .or_else(|| ints::<i32>(a))
        .or_else(|| ints::<u64>(a))
        .or_else(|| ints::<u32>(a))
        .or_else(|| ints::<i16>(a))
        .or_else(|| ints::<u16>(a))
        .or_else(|| ints::<i8>(a))
        .ok_or_else(|| dtype_error(name, a, want))?;
    if v.len() != count {
        return Err(PyValueError::new_err(format!(
            "{name}: {} labels for {count} images",
            v.len()
        )));
    }
    if let Some(i) = v.iter().position(|&l| !(0..CLASSES as i128).contains(&l)) {
        return Err(PyValueError::new_err(format!(
            "{name}: label {} at position {i} is outside 0..{}",
            v[i],
            CLASSES - 1
        )));
    }
    Ok(v.into_iter().map(|l| l as u8).collect())
}
