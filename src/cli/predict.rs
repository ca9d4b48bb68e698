//! `scratchnet predict`: classify your own images of digits.

use super::{DeviceArg, Verbosity};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use scratchnet::backend::logits;
use scratchnet::data::image_prep::{load_digit, SIDE};
use scratchnet::fsutil::check_output_dir;
use scratchnet::model_io::Model;
use scratchnet::nn::network::argmax;
use scratchnet::nn::softmax_ce::softmax;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Images of any size, grey or colour, dark ink on light paper or the reverse, are
prepared as MNIST was made: cropped to the ink, fitted into 20x20, centred by
centre of mass in 28x28.

Every readable image is answered. A file that cannot be read, or a blank image,
is reported on stderr (file and reason) and in CSV as a row with an empty digit
and probabilities and the reason in the last column, `error`; the exit status
is then 1.

Examples:
  scratchnet predict model.safetensors my-seven.png
  scratchnet predict model.safetensors photo.jpg -v --debug-dir seen/
  scratchnet predict --model model.safetensors scans/ --csv > predictions.csv"
)]
pub struct PredictArgs {
    /// A model saved by `train --save` [default: the first file named, if a .safetensors]
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// Image files (PNG, JPEG, PGM/PPM, BMP) or directories of them
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<PathBuf>,
    /// Print CSV (file, digit, ten probabilities) instead of a table
    #[arg(long)]
    csv: bool,
    /// Save the 28x28 image the network saw for each file, as DIR/NAME.prepared.png
    #[arg(long, value_name = "DIR")]
    debug_dir: Option<PathBuf>,
    /// Draw the 28x28 image the network saw for each file (on stderr)
    #[arg(short, long, conflicts_with = "quiet")]
    pub(super) verbose: bool,
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024), help = "Worker threads [default: all cores]")]
    pub(super) threads: Option<u16>,
    #[command(flatten)]
    device: DeviceArg,
}

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "pgm", "ppm", "pnm", "pbm", "bmp"];

/// The files named, with directories expanded to their images in name order.
fn image_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{}: cannot list", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            if found.is_empty() {
                bail!(
                    "{}: no images ({}) in this directory",
                    p.display(),
                    EXTENSIONS.join(", ")
                );
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

pub fn run(mut args: PredictArgs, v: Verbosity) -> Result<()> {
    args.device.device.check()?;
    let model_path = match args.model.take() {
        Some(m) => m,
        None if args.images.len() > 1 && is_model(&args.images[0]) => args.images.remove(0),
        None if is_model(&args.images[0]) => bail!(
            "no image given: name the images (or folders of them) after the model: `scratchnet predict {} IMAGE...`",
            args.images[0].display()
        ),
        None => {
            bail!("give a model: `scratchnet predict model.safetensors IMAGE...` (or --model FILE)")
        }
    };
    let model = Model::load(&model_path)?;
    let arch = &model.layout.arch;
    if arch.inputs != SIDE * SIDE {
        bail!(
            "{}: the model takes {} inputs; predict prepares {SIDE}x{SIDE} images",
            model_path.display(),
            arch.inputs
        );
    }
    let files = image_files(&args.images)?;
    if let Some(dir) = &args.debug_dir {
        check_output_dir("--debug-dir", dir)?;
    }
    // Every readable image is answered; each unreadable one is reported
    // (file and reason) and makes the exit status non-zero.
    let loaded: Vec<Result<Vec<f32>>> = files.par_iter().map(|f| load_digit(f)).collect();
    if let Some(dir) = &args.debug_dir {
        for (f, digit) in files.iter().zip(&loaded) {
            if let Ok(d) = digit {
                save_prepared(dir, f, d)?;
            }
        }
    }
    let pixels: Vec<f32> = loaded.iter().flatten().flatten().copied().collect();
    let classes = arch.classes;
    let target = args.device.target();
    let mut probs = logits(target, &model.layout, &model.params, &pixels)?;
    softmax(&mut probs, classes);
    let mut answers = probs.chunks_exact(classes);
    let rows: Vec<(&PathBuf, Result<&[f32], String>)> = files
        .iter()
        .zip(&loaded)
        .map(|(f, l)| match l {
            Ok(_) => (f, Ok(answers.next().expect("one answer per image"))),
            Err(e) => {
                // The reason, without the file name the error starts with.
                let why = format!("{e:#}");
                let name = format!("{}: ", f.display());
                (f, Err(why.strip_prefix(&name).unwrap_or(&why).to_string()))
            }
        })
        .collect();
    let failed: Vec<_> = rows.iter().filter(|(_, r)| r.is_err()).collect();
    if v > Verbosity::Quiet {
        for (f, r) in &rows {
            if let Ok(p) = r {
                let top = p[argmax(p) as usize];
                if top < UNSURE {
                    eprintln!("warning: {}: the network is unsure (top probability {top:.2}); `-v` or --debug-dir shows the image it saw", f.display());
                }
            }
        }
    }
    if v == Verbosity::Verbose {
        for ((f, _), digit) in rows.iter().zip(&loaded) {
            if let Ok(d) = digit {
                eprintln!("{}, as the network saw it:\n{}", f.display(), sketch(d));
            }
        }
    }
    for (f, r) in &failed {
        if let Err(why) = r {
            eprintln!("{}: {why}", f.display());
        }
    }
    if args.csv {
        println!(
            "file,digit,{},error",
            (0..classes)
                .map(|c| format!("p{c}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        for (f, r) in &rows {
            match r {
                Ok(p) => println!(
                    "{},{},{},",
                    csv_field(&f.display().to_string()),
                    argmax(p),
                    p.iter()
                        .map(|v| format!("{v:.8}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Err(why) => println!(
                    "{},{},{}",
                    csv_field(&f.display().to_string()),
                    ",".repeat(classes),
                    csv_field(why)
                ),
            }
        }
    } else if let [(f, Ok(p))] = rows.as_slice() {
        let d = argmax(p) as usize;
        println!("{}: {d}  (probability {:.4})", f.display(), p[d]);
        for (c, v) in p.iter().enumerate() {
            println!("  {c}: {v:.4}  {}", "#".repeat((v * 40.0).round() as usize));
        }
    } else {
        let width = files
            .iter()
            .map(|f| f.display().to_string().len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!("{:width$}  digit  probability", "file");
        for (f, r) in &rows {
            match r {
                Ok(p) => {
                    let d = argmax(p) as usize;
                    println!("{:width$}  {d:>5}  {:>11.4}", f.display().to_string(), p[d]);
                }
                Err(_) => println!(
                    "{:width$}  {:>5}  {:>11}",
                    f.display().to_string(),
                    "-",
                    "-"
                ),
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} files got no answer (each is named above)",
            failed.len(),
            files.len()
        );
    }
    Ok(())
}

/// Whether `path` names a model file rather than an image.
fn is_model(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// Below this top probability, an answer is flagged as unsure.
const UNSURE: f32 = 0.7;

/// A 28x28 image in characters, darkest to brightest ink.
fn sketch(digit: &[f32]) -> String {
    const SHADES: &[u8] = b" .:-=+*#%@";
    digit
        .chunks(SIDE)
        .map(|row| {
            row.iter()
                .map(|&v| SHADES[((v.clamp(0.0, 1.0) * 9.0).round()) as usize] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The 28x28 image the network saw for `file`, as `dir/NAME.prepared.png`
/// (ink white on black, as MNIST's).
fn save_prepared(dir: &Path, file: &Path, digit: &[f32]) -> Result<()> {
    let name = file.file_stem().unwrap_or_default().to_string_lossy();
    let path = dir.join(format!("{name}.prepared.png"));
    let img = image::GrayImage::from_fn(SIDE as u32, SIDE as u32, |x, y| {
        image::Luma([(digit[y as usize * SIDE + x as usize] * 255.0).round() as u8])
    });
    img.save(&path)
        .with_context(|| format!("--debug-dir: cannot write {}", path.display()))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
