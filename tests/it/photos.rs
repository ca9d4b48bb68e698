//! Pictures of digits as people make them, read by `scratchnet predict`:
//! `scripts/digit_photos.py` draws the first 200 MNIST test digits three
//! ways (photographed on paper: coloured ink, tinted paper, uneven light, a
//! shadow along an edge, noise, JPEG, the digit 15-40% of the frame;
//! exported from a drawing canvas: black on transparent; scanned clean),
//! and a model of the default preset reads each set. Needs a Python with
//! numpy and Pillow (`$SCRATCHNET_PYTHON`, as CI sets it).

use crate::common;

use std::path::Path;
use std::process::Command;

/// Fraction of the CSV's rows whose digit is the label in the file's name
/// (`INDEX-label-DIGIT.EXT`).
fn right(csv: &str) -> (usize, usize) {
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    let ok = rows
        .iter()
        .filter(|row| {
            let mut f = row.split(',');
            let (file, digit) = (f.next().unwrap(), f.next().unwrap());
            let label = file
                .rsplit("label-")
                .next()
                .unwrap()
                .chars()
                .next()
                .unwrap();
            digit.starts_with(label)
        })
        .count();
    (ok, rows.len())
}

#[test]
#[ignore = "slow suite, photos: needs a Python with numpy and Pillow; `.ci/run` runs it"]
fn photos_canvas_exports_and_scans_are_read_right() {
    let test = "photos_canvas_exports_and_scans_are_read_right";
    let Some(python) = std::env::var_os("SCRATCHNET_PYTHON") else {
        return common::skip(
            test,
            "SCRATCHNET_PYTHON does not name a Python with numpy and Pillow",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let model = common::trained_model(dir.path(), serde_json::json!({}));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/digit_photos.py");
    // Seen (2026-12-06): photos 200, canvas exports 199, clean scans 200 of
    // 200. On digits 1000-1199 (seed 7) 192, 194 and 195, the network reading
    // 195 of MNIST's own images of those digits. Bounds: 90%, and 195 for
    // clean scans.
    for (kind, least) in [("photo", 180), ("canvas", 180), ("clean", 195)] {
        let out = dir.path().join(kind);
        let made = Command::new(&python)
            .arg(&script)
            .args([kind, out.to_str().unwrap(), "--count", "200"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&made.stderr);
        assert!(made.status.success(), "{kind}: the generator failed: {err}");
        let (ok, n) = right(&common::predict_csv(&model, &[&out]));
        println!("{kind}: {ok} of {n} read right");
        assert_eq!(n, 200, "{kind}: every picture answered");
        assert!(ok >= least, "{kind}: {ok} of {n} read right, under {least}");
    }
}
