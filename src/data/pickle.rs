//! A reader for the notebook's `mnist.pkl.gz`: a pickle (protocol 2) of
//! `((train_x, train_y), (val_x, val_y), (test_x, test_y))` numpy arrays.
//!
//! This is not a Python unpickler. It runs a tiny stack machine that knows
//! only the opcodes such a file uses and only three globals (numpy's
//! `_reconstruct`, `ndarray` and `dtype`); it never executes anything, and
//! refuses everything else with the opcode and its offset.

use super::pixels::Pixels;
use super::{open_maybe_gz, read_exact_len, Dataset, Split, CLASSES};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// A numpy array as the pickle describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub data: Vec<u8>,
}

/// The element types a numpy array in such a file may have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dtype {
    F4,
    F8,
    I8,
    I4,
    U1,
}

impl Dtype {
    fn parse(s: &[u8]) -> Option<Dtype> {
        Some(match s {
            b"f4" => Dtype::F4,
            b"f8" => Dtype::F8,
            b"i8" => Dtype::I8,
            b"i4" => Dtype::I4,
            b"u1" => Dtype::U1,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Dtype::F4 | Dtype::I4 => 4,
            Dtype::F8 | Dtype::I8 => 8,
            Dtype::U1 => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    Reconstruct,
    Ndarray,
    DtypeCtor,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    Mark,
    Global(Global),
    /// A dtype awaiting its state (byte order).
    Dtype {
        kind: Dtype,
        big_endian: bool,
    },
    /// An ndarray made by `_reconstruct`, awaiting its state.
    EmptyArray,
    Array(Array),
}

/// Upper bound on memo entries, so a hostile file cannot grow it without limit.
const MAX_MEMO: usize = 1 << 16;

/// Parses a pickle stream into its top-level value.
fn run(r: &mut dyn Read) -> Result<Value> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let mut pos: u64 = 0;
    let byte = |r: &mut dyn Read, pos: &mut u64| -> Result<u8> {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)
            .map_err(|e| anyhow!("truncated pickle at byte {pos}: {e}"))?;
        *pos += 1;
        Ok(b[0])
    };
    let read_n = |r: &mut dyn Read, pos: &mut u64, n: usize| -> Result<Vec<u8>> {
        let v = read_exact_len(r, n)
            .map_err(|e| anyhow!("cannot read pickle at byte {pos}: {e}"))?
            .ok_or_else(|| {
                anyhow!("truncated pickle: a {n}-byte string at byte {pos} runs past the end")
            })?;
        *pos += n as u64;
        Ok(v)
    };
    fn pop(stack: &mut Vec<Value>, at: u64) -> Result<Value> {
        stack
            .pop()
            .ok_or_else(|| anyhow!("malformed pickle: stack empty at byte {at}"))
    }
    fn pop_mark(stack: &mut Vec<Value>, at: u64) -> Result<Vec<Value>> {
        let m = stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or_else(|| anyhow!("malformed pickle: no MARK before byte {at}"))?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    }
    loop {
        let at = pos;
        let op = byte(r, &mut pos)?;
        match op {
            0x80 => {
                let proto = byte(r, &mut pos)?;
                if proto > 4 {
                    bail!("pickle protocol {proto} is not supported (expected 2)");
                }
            }
            b'.' => return pop(&mut stack, at),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(i32::from_le_bytes(read_n(r, &mut pos, 4)?.try_into().unwrap()) as i64)),
            b'K' => stack.push(Value::Int(byte(r, &mut pos)? as i64)),
            b'M' => stack.push(Value::Int(u16::from_le_bytes(read_n(r, &mut pos, 2)?.try_into().unwrap()) as i64)),
            // SHORT_BINSTRING, SHORT_BINBYTES
            b'U' | b'C' => {
                let n = byte(r, &mut pos)? as usize;
                stack.push(Value::Bytes(read_n(r, &mut pos, n)?));
            }
            // BINSTRING, BINBYTES, BINUNICODE
            b'T' | b'B' | b'X' => {
                let n = u32::from_le_bytes(read_n(r, &mut pos, 4)?.try_into().unwrap()) as usize;
                stack.push(Value::Bytes(read_n(r, &mut pos, n)?));
            }
            b')' => stack.push(Value::Tuple(vec![])),
            b't' => {
                let items = pop_mark(&mut stack, at)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    bail!("malformed pickle: TUPLE{n} on a stack of {} at byte {at}", stack.len());
                }
                let items = stack.split_off(stack.len() - n);
                if items.contains(&Value::Mark) {
                    bail!("malformed pickle: MARK inside TUPLE{n} at byte {at}");
                }
                stack.push(Value::Tuple(items));
            }
            b'c' => {
                let mut line = Vec::new();
                for _ in 0..2 {
                    loop {
                        let b = byte(r, &mut pos)?;
                        if b == b'\n' {
                            break;
                        }
                        if line.len() > 200 {
                            bail!("malformed pickle: GLOBAL name too long at byte {at}");
                        }
                        line.push(b);
                    }
                    line.push(b' ');
                }
                let name = String::from_utf8_lossy(&line).trim().to_string();
                let g = match name.as_str() {
                    "numpy.core.multiarray _reconstruct" | "numpy._core.multiarray _reconstruct" => Global::Reconstruct,
                    "numpy ndarray" => Global::Ndarray,
                    "numpy dtype" => Global::DtypeCtor,
                    _ => bail!("refusing pickle global `{name}` at byte {at}: only numpy arrays are accepted"),
                };
                stack.push(Value::Global(g));
            }
            // BINPUT, LONG_BINPUT, MEMOIZE-free protocol 2 memo
            b'q' | b'r' => {
                let key = if op == b'q' { byte(r, &mut pos)? as u32 } else { u32::from_le_bytes(read_n(r, &mut pos, 4)?.try_into().unwrap()) };
                let top = stack.last().ok_or_else(|| anyhow!("malformed pickle: PUT on an empty stack at byte {at}"))?;
                if holds_array(top) || memo.len() >= MAX_MEMO {
                    // Arrays are never fetched back in such files; not cloning them saves memory.
                    continue;
                }
                memo.insert(key, top.clone());
            }
            b'h' | b'j' => {
                let key = if op == b'h' { byte(r, &mut pos)? as u32 } else { u32::from_le_bytes(read_n(r, &mut pos, 4)?.try_into().unwrap()) };
                let v = memo.get(&key).ok_or_else(|| anyhow!("malformed pickle: GET of unknown memo {key} at byte {at}"))?;
                stack.push(v.clone());
            }
            b'R' => {
                let args = pop(&mut stack, at)?;
                let f = pop(&mut stack, at)?;
                stack.push(reduce(f, args).with_context(|| format!("at byte {at}"))?);
            }
            b'b' => {
                let state = pop(&mut stack, at)?;
                let obj = pop(&mut stack, at)?;
                stack.push(build(obj, state).with_context(|| format!("at byte {at}"))?);
            }
            _ => bail!("unsupported pickle opcode 0x{op:02x} at byte {at}: this reader accepts only the numpy-array pickles the notebook used"),
        }
    }
}

fn holds_array(v: &Value) -> bool {
    match v {
        Value::Array(_) => true,
        Value::Tuple(items) => items.iter().any(holds_array),
        _ => false,
    }
}

fn reduce(f: Value, args: Value) -> Result<Value> {
    let Value::Tuple(args) = args else {
        bail!("REDUCE arguments are not a tuple")
    };
    match (f, args.as_slice()) {
        (
            Value::Global(Global::Reconstruct),
            [Value::Global(Global::Ndarray), Value::Tuple(_), Value::Bytes(_)],
        ) => Ok(Value::EmptyArray),
        (
            Value::Global(Global::DtypeCtor),
            [Value::Bytes(kind), Value::Int(_) | Value::Bool(_), Value::Int(_) | Value::Bool(_)],
        ) => {
            let kind = Dtype::parse(kind).ok_or_else(|| {
                anyhow!(
                    "unsupported numpy dtype `{}`",
                    String::from_utf8_lossy(kind)
                )
            })?;
            Ok(Value::Dtype {
                kind,
                big_endian: false,
            })
        }
        (f, _) => bail!("refusing to call {f:?} with these arguments"),
    }
}

fn build(obj: Value, state: Value) -> Result<Value> {
    let Value::Tuple(mut state) = state else {
        bail!("BUILD state is not a tuple")
    };
    match (obj, state.as_mut_slice()) {
        (Value::Dtype { kind, .. }, [Value::Int(_), Value::Bytes(order), ..]) => {
            let big_endian = match order.as_slice() {
                b"<" | b"|" | b"=" => false,
                b">" => true,
                o => bail!("unknown byte order `{}`", String::from_utf8_lossy(o)),
            };
            Ok(Value::Dtype { kind, big_endian })
        }
        (
            Value::EmptyArray,
            [Value::Int(_), Value::Tuple(shape), Value::Dtype { kind, big_endian }, Value::Bool(fortran), Value::Bytes(data)],
        ) => {
            let (kind, big_endian, fortran) = (*kind, *big_endian, *fortran);
            let shape = shape
                .iter()
                .map(|d| match d {
                    Value::Int(n) if *n >= 0 => Ok(*n as usize),
                    _ => Err(anyhow!("array shape {shape:?} is not a tuple of sizes")),
                })
                .collect::<Result<Vec<_>>>()?;
            if fortran && shape.len() > 1 {
                bail!("Fortran-ordered arrays are not supported");
            }
            let count = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| anyhow!("array shape {shape:?} overflows"))?;
            if count.checked_mul(kind.size()) != Some(data.len()) {
                bail!(
                    "array of shape {shape:?} and {}-byte elements needs {} bytes but holds {}",
                    kind.size(),
                    count.saturating_mul(kind.size()),
                    data.len()
                );
            }
            let mut data = std::mem::take(data);
            if big_endian {
                data.chunks_exact_mut(kind.size()).for_each(|c| c.reverse());
            }
            Ok(Value::Array(Array {
                shape,
                dtype: kind,
                data,
            }))
        }
        (obj, _) => bail!("unexpected BUILD of {}", short(&obj)),
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("array {:?}", a.shape),
        Value::Bytes(b) => format!("{}-byte string", b.len()),
        other => format!("{other:?}"),
    }
}

impl Array {
    /// Elements as f32 (images).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let c = self.data.chunks_exact(self.dtype.size());
        Ok(match self.dtype {
            Dtype::F4 => c
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::F8 => c
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            Dtype::U1 => self
                .data
                .iter()
                .map(|&b| b as f32 * super::PIXEL_SCALE)
                .collect(),
            d => bail!("images have integer dtype {d:?}; expected float or u8"),
        })
    }

    /// Elements as labels 0..CLASSES.
    pub fn to_labels(&self) -> Result<Vec<u8>> {
        let c = self.data.chunks_exact(self.dtype.size());
        let wide: Vec<i64> = match self.dtype {
            Dtype::I8 => c
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::I4 => c
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
                .collect(),
            Dtype::U1 => self.data.iter().map(|&b| b as i64).collect(),
            d => bail!("labels have dtype {d:?}; expected integers"),
        };
        wide.iter()
            .enumerate()
            .map(|(i, &l)| {
                u8::try_from(l)
                    .ok()
                    .filter(|&l| (l as usize) < CLASSES)
                    .ok_or_else(|| anyhow!("label {l} at index {i} is not a digit 0-9"))
            })
            .collect()
    }
}

/// Parses a pickle from a reader into its arrays, checking the notebook's layout.
pub fn parse_mnist_pickle(r: &mut dyn Read) -> Result<(Split, Split, Split)> {
    let Value::Tuple(parts) = run(r)? else {
        bail!("the pickle does not hold a tuple of (train, validation, test)")
    };
    if parts.len() != 3 {
        bail!(
            "the pickle holds a tuple of {} items; expected (train, validation, test)",
            parts.len()
        );
    }
    let mut splits = Vec::with_capacity(3);
    for (name, part) in ["train", "validation", "test"].iter().zip(parts) {
        let Value::Tuple(pair) = part else {
            bail!("the {name} part is not an (images, labels) tuple")
        };
        let [Value::Array(x), Value::Array(y)] = pair.as_slice() else {
            bail!("the {name} part is not a pair of numpy arrays")
        };
        if x.shape.len() != 2 || y.shape.len() != 1 || x.shape[0] != y.shape[0] {
            bail!("the {name} part has images of shape {:?} and labels of shape {:?}; expected (n, pixels) and (n,)", x.shape, y.shape);
        }
        let images = x.to_f32().with_context(|| format!("{name} images"))?;
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            bail!("{name} image pixel {i} is not finite");
        }
        let labels = y.to_labels().with_context(|| format!("{name} labels"))?;
        splits.push(Split {
            images: Pixels::packed(images),
            labels,
            features: x.shape[1],
        });
    }
    let test = splits.pop().unwrap();
    let val = splits.pop().unwrap();
    let train = splits.pop().unwrap();
    if val.features != train.features || test.features != train.features {
        bail!(
            "the parts have different image sizes ({}, {}, {})",
            train.features,
            val.features,
            test.features
        );
    }
    Ok((train, val, test))
}

/// Loads the notebook's `mnist.pkl.gz` (or an uncompressed `.pkl`).
pub fn load_mnist_pickle(path: &Path) -> Result<Dataset> {
    let (mut r, _) = open_maybe_gz(path)?;
    let (train, val, test) =
        parse_mnist_pickle(&mut r).with_context(|| format!("{}", path.display()))?;
    let side = (train.features as f64).sqrt() as usize;
    let shape = if side * side == train.features {
        (side, side)
    } else {
        (1, train.features)
    };
    let checksums = vec![(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        super::sha256_file(path)?,
    )];
    Ok(Dataset {
        train,
        val,
        test,
        shape,
        checksums,
    })
}
