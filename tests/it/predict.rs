//! `predict` on MNIST test digits re-drawn the way a user's photo or scan
//! would look: three times larger, dark ink on light paper, off-centre.

use crate::common;

use image::{GrayImage, Luma, Rgb, RgbImage};
use scratchnet::backend::Target;
use scratchnet::data::Dataset;
use scratchnet::train::{TrainConfig, Trainer};
use std::path::Path;
use std::process::Command;

/// Test digit `i` at 3x scale, inverted, at (`ox`, `oy`) on a 140 x 120 page.
fn render(ds: &Dataset, i: usize, ox: u32, oy: u32) -> GrayImage {
    let img = ds.test.image(i);
    GrayImage::from_fn(140, 120, |x, y| {
        let (sx, sy) = (x.wrapping_sub(ox) / 3, y.wrapping_sub(oy) / 3);
        let v = if x >= ox && y >= oy && sx < 28 && sy < 28 {
            img[(sy * 28 + sx) as usize]
        } else {
            0.0
        };
        Luma([255 - (v * 256.0).min(255.0) as u8])
    })
}

#[test]
fn redrawn_test_digits_are_classified_as_their_labels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ds = Dataset::load(&root.join("data/mnist"), Some(10_000)).unwrap();
    let cfg = TrainConfig::resolve(None, serde_json::json!({"epochs": 2})).unwrap();
    let mut t = Trainer::new(cfg, &ds, Target::cpu(2), None).unwrap();
    common::finish(&mut t);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    t.trained_model().unwrap().save(&model).unwrap();

    let pics = dir.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    let n = 40;
    for i in 0..n {
        let page = render(&ds, i, 5 + (i as u32 * 7) % 50, 3 + (i as u32 * 11) % 30);
        let name = pics.join(format!("{i:02}"));
        match i % 4 {
            0 => page.save(name.with_extension("png")).unwrap(),
            1 => page.save(name.with_extension("bmp")).unwrap(),
            2 => page.save(name.with_extension("pgm")).unwrap(),
            // Colour JPEG: blue ink on cream paper.
            _ => RgbImage::from_fn(140, 120, |x, y| {
                let v = page.get_pixel(x, y)[0] as f32 / 255.0;
                Rgb([
                    (40.0 + 205.0 * v) as u8,
                    (40.0 + 200.0 * v) as u8,
                    (120.0 + 110.0 * v) as u8,
                ])
            })
            .save(name.with_extension("jpg"))
            .unwrap(),
        }
    }
    let csv = common::predict_csv(&model, &[&pics]);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("file,digit,p0,"));
    let (mut right, mut worst_sum) = (0, 0.0f64);
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        // file, digit, ten probabilities, and an empty error.
        assert_eq!(f.len(), 13, "{line}");
        assert_eq!(f[12], "", "{line}");
        assert!(
            f[0].contains(&format!("{i:02}.")),
            "files in name order: {line}"
        );
        let p: f64 = f[2..12].iter().map(|v| v.parse::<f64>().unwrap()).sum();
        worst_sum = worst_sum.max((p - 1.0).abs());
        right += (f[1] == ds.test.labels[i].to_string()) as usize;
    }
    // Seen (2026-12-06): within 2.6e-7 (float32's rounding, and 8 decimals).
    println!("probabilities sum to 1 within {worst_sum:.1e}");
    assert!(
        worst_sum < 3e-6,
        "probabilities sum to 1 only within {worst_sum}"
    );
    println!("{right} of {n} redrawn digits classified as their labels");
    assert!(right >= n - 2, "only {right} of {n} right");

    // One file: the digit and its ten probabilities.
    let out = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            pics.join("00.png").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("00.png: {}", ds.test.labels[0])) && text.contains("  9: "),
        "{text}"
    );

    // Not an image: a clear error naming the file.
    let bogus = dir.path().join("notes.png");
    std::fs::write(&bogus, "not a picture").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            bogus.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("notes.png")
            && err.contains("cannot read as an image"),
        "{err}"
    );
}
