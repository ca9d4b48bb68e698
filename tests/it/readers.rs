//! The data readers on tiny files written here: every bad-input case gets a
//! clear error naming the file and the problem.

use crate::common;

use flate2::write::GzEncoder;
use scratchnet::data::idx::{read_idx, read_split, write_idx, IMAGES_MAGIC, LABELS_MAGIC};
use scratchnet::data::pickle::parse_mnist_pickle;
use scratchnet::data::pixels::Pixels;
use scratchnet::data::Dataset;
use std::io::Write;
use std::path::{Path, PathBuf};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_bytes(magic: u32, dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_idx(&mut v, magic, dims, data).unwrap();
    v
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err_of<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.unwrap_err())
}

/// 3 images of 2x2 and their labels, as IDX bytes.
fn tiny() -> (Vec<u8>, Vec<u8>) {
    (
        idx_bytes(
            IMAGES_MAGIC,
            &[3, 2, 2],
            &[0, 64, 128, 255, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        idx_bytes(LABELS_MAGIC, &[3], &[7, 0, 9]),
    )
}

#[test]
fn raw_and_gzip_idx_give_identical_splits() {
    let d = tempfile::tempdir().unwrap();
    let (img, lab) = tiny();
    let raw = read_split(&put(d.path(), "a", &img), &put(d.path(), "b", &lab)).unwrap();
    // Compressed files named without .gz: the content decides.
    let zipped = read_split(
        &put(d.path(), "c", &gz(&img)),
        &put(d.path(), "d", &gz(&lab)),
    )
    .unwrap();
    assert_eq!(raw.0.images, zipped.0.images);
    assert_eq!(raw.0.labels, vec![7, 0, 9]);
    assert_eq!(raw.1, (2, 2));
    assert_eq!(
        raw.0.images.range(0..4)[..],
        [0.0, 0.25, 0.5, 255.0 / 256.0]
    );
    assert!(
        matches!(raw.0.images, Pixels::Bytes(_)),
        "IDX pixels kept as bytes"
    );
}

#[test]
fn bad_idx_files_are_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let (img, lab) = tiny();
    let cases: Vec<(&str, Vec<u8>, u32, &str)> = vec![
        (
            "wrong-magic",
            idx_bytes(0x0803_0000, &[], &[]),
            IMAGES_MAGIC,
            "wrong magic",
        ),
        ("labels-as-images", lab.clone(), IMAGES_MAGIC, "wrong magic"),
        ("too-short", vec![0, 0], IMAGES_MAGIC, "truncated"),
        ("cut-header", img[..9].to_vec(), IMAGES_MAGIC, "truncated"),
        (
            "cut-data",
            img[..img.len() - 1].to_vec(),
            IMAGES_MAGIC,
            "file holds",
        ),
        (
            "extra-data",
            [img.clone(), vec![1]].concat(),
            IMAGES_MAGIC,
            "file holds",
        ),
        (
            "cut-data-gz",
            gz(&img[..img.len() - 1]),
            IMAGES_MAGIC,
            "truncated",
        ),
        (
            "extra-data-gz",
            gz(&[img.clone(), vec![1]].concat()),
            IMAGES_MAGIC,
            "unexpected bytes",
        ),
        // Four billion images: refused from the header, before any allocation.
        (
            "huge",
            idx_bytes(IMAGES_MAGIC, &[4_000_000_000, 28, 28], &[1, 2, 3]),
            IMAGES_MAGIC,
            "need",
        ),
        (
            "huge-gz",
            gz(&idx_bytes(
                IMAGES_MAGIC,
                &[4_000_000_000, 28, 28],
                &[1, 2, 3],
            )),
            IMAGES_MAGIC,
            "truncated",
        ),
        (
            "corrupt-gz",
            {
                let mut g = gz(&img);
                let n = g.len();
                g[n / 2] ^= 0xff;
                g[n / 2 + 1] ^= 0xff;
                g
            },
            IMAGES_MAGIC,
            "corrupt",
        ),
    ];
    for (name, bytes, magic, why) in cases {
        let p = put(d.path(), name, &bytes);
        let e = err_of(read_idx(&p, magic));
        assert!(e.contains(name) && e.contains(why), "{name}: {e}");
    }
}

#[test]
fn label_problems_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (img, _) = tiny();
    let i = put(d.path(), "img", &img);
    let e = err_of(read_split(
        &i,
        &put(
            d.path(),
            "two-labels",
            &idx_bytes(LABELS_MAGIC, &[2], &[1, 2]),
        ),
    ));
    assert!(e.contains("2 labels") && e.contains("3 images"), "{e}");
    let e = err_of(read_split(
        &i,
        &put(
            d.path(),
            "big-label",
            &idx_bytes(LABELS_MAGIC, &[3], &[1, 10, 2]),
        ),
    ));
    assert!(
        e.contains("big-label") && e.contains("label 10 at index 1"),
        "{e}"
    );
}

#[test]
fn a_directory_splits_validation_off_the_end_of_training() {
    let d = tempfile::tempdir().unwrap();
    let (img, lab) = tiny();
    put(d.path(), "train-images-idx3-ubyte.gz", &gz(&img));
    put(d.path(), "train-labels-idx1-ubyte", &lab);
    put(d.path(), "t10k-images-idx3-ubyte", &img);
    put(d.path(), "t10k-labels.idx1-ubyte", &lab);
    let ds = Dataset::load(d.path(), Some(1)).unwrap();
    assert_eq!((ds.train.len(), ds.val.len(), ds.test.len()), (2, 1, 3));
    assert_eq!(ds.val.labels, vec![9]);
    assert_eq!(ds.checksums.len(), 4);
    let e = err_of(Dataset::load(d.path(), Some(3)));
    assert!(
        e.contains("a validation split of 3 images leaves none to train on"),
        "{e}"
    );
    std::fs::remove_file(d.path().join("t10k-images-idx3-ubyte")).unwrap();
    let e = err_of(Dataset::load(d.path(), Some(1)));
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("download"),
        "{e}"
    );
}

/// Writes a pickle shaped like the notebook's file (protocol 2 numpy arrays).
struct Pickle(Vec<u8>);

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").bytes());
    }
    fn short_str(&mut self, s: &[u8]) {
        self.0.push(b'U');
        self.0.push(s.len() as u8);
        self.0.extend(s);
    }
    fn int(&mut self, n: u16) {
        self.0.push(b'M');
        self.0.extend(n.to_le_bytes());
    }
    fn array(&mut self, shape: &[u16], dtype: &str, data: &[u8]) {
        self.global("numpy.core.multiarray", "_reconstruct");
        self.global("numpy", "ndarray");
        self.int(0);
        self.0.push(0x85);
        self.short_str(b"b");
        self.0.extend([0x87, b'R', b'(']);
        self.int(1);
        for &d in shape {
            self.int(d);
        }
        self.0.push(if shape.len() == 1 { 0x85 } else { 0x86 });
        self.global("numpy", "dtype");
        self.short_str(dtype.as_bytes());
        self.int(0);
        self.int(1);
        self.0.extend([0x87, b'R', b'(']);
        self.int(3);
        self.short_str(b"<");
        self.0.extend([b'N', b'N', b'N']);
        self.0
            .extend([b'J', 0xff, 0xff, 0xff, 0xff, b'J', 0xff, 0xff, 0xff, 0xff]);
        self.int(0);
        self.0.extend([b't', b'b', 0x89, b'T']);
        self.0.extend((data.len() as u32).to_le_bytes());
        self.0.extend(data);
        self.0.extend([b't', b'b']);
    }
    fn notebook_like(images: &[f32], labels: &[i64]) -> Vec<u8> {
        let mut p = Pickle(vec![0x80, 2]);
        let x: Vec<u8> = images.iter().flat_map(|v| v.to_le_bytes()).collect();
        let y: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        let n = labels.len() as u16;
        for _ in 0..3 {
            p.array(&[n, (images.len() / labels.len()) as u16], "f4", &x);
            p.array(&[n], "i8", &y);
            p.0.push(0x86);
        }
        p.0.extend([0x87, b'.']);
        p.0
    }
}

#[test]
fn pickle_reader_reads_the_notebook_format() {
    let bytes = Pickle::notebook_like(&[0.0, 0.5, 0.25, 1.0], &[3, 8]);
    let (train, val, test) = parse_mnist_pickle(&mut &bytes[..]).unwrap();
    assert_eq!(train.images.floats()[..], [0.0, 0.5, 0.25, 1.0]);
    assert_eq!(train.labels, vec![3, 8]);
    assert_eq!(train.features, 2);
    assert_eq!(val.labels, test.labels);
}

#[test]
fn pickle_reader_refuses_anything_else() {
    let good = Pickle::notebook_like(&[0.0, 0.5], &[3, 8]);
    let mut evil = Pickle(vec![0x80, 2]);
    evil.global("os", "system");
    evil.short_str(b"echo pwned");
    evil.0.extend([0x85, b'R', b'.']);
    let mut bad_label = good.clone();
    let at = bad_label.len() - 5 - 8 * 2; // before: `t b TUPLE2 TUPLE3 STOP`
    bad_label[at] = 42; // the test part's first label
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (evil.0, "refusing pickle global `os system`"),
        (vec![0x80, 2, b'}', b'.'], "unsupported pickle opcode 0x7d"),
        (good[..good.len() / 2].to_vec(), "truncated"),
        (vec![0x80, 2, b'K', 1, b'.'], "does not hold a tuple"),
        (bad_label, "label 42"),
        (
            vec![0x80, 2, b'T', 0xff, 0xff, 0xff, 0x7f, 1, 2],
            "truncated",
        ),
    ];
    for (bytes, why) in cases {
        let e = err_of(parse_mnist_pickle(&mut &bytes[..]));
        assert!(e.contains(why), "expected `{why}` in: {e}");
    }
}

#[test]
fn pickle_file_errors_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = put(d.path(), "broken.pkl.gz", &gz(&[0x80, 2, b'}']));
    let e = err_of(Dataset::load(&p, None));
    assert!(e.contains("broken.pkl.gz") && e.contains("opcode"), "{e}");
}

/// The notebook's pickle and the IDX files hold the same pixels and labels.
#[test]
fn shared_pickle_and_idx_give_identical_tensors() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if !shared.join("mnist.pkl.gz").is_file() {
        let reason = format!("{} not present", shared.join("mnist.pkl.gz").display());
        common::skip("shared_pickle_and_idx_give_identical_tensors", &reason);
        return;
    }
    let pkl = Dataset::load(&shared.join("mnist.pkl.gz"), None).unwrap();
    let idx = Dataset::load(&shared.join("mnist"), Some(10_000)).unwrap();
    for (name, a, b) in [
        ("train", &pkl.train, &idx.train),
        ("val", &pkl.val, &idx.val),
        ("test", &pkl.test, &idx.test),
    ] {
        assert_eq!(a.len(), b.len(), "{name} size");
        assert_eq!(a.labels, b.labels, "{name} labels");
        assert!(a.images == b.images, "{name} pixels differ");
    }
    assert_eq!(pkl.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(pkl.test.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
}
