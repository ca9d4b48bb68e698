//! TensorBoard's event files (`--tensorboard DIR`): at each evaluation the
//! scalars of the metrics file and the first layer's units as images, and
//! the run's settings as hyper-parameters, for `tensorboard --logdir DIR`.
//!
//! A file is a sequence of records, each framed as TensorFlow's record
//! files frame them: the length (u64, little-endian), its masked CRC-32C,
//! the bytes (a serialised `tensorflow.Event`), their masked CRC-32C.

mod proto;

use crate::train::{EvalRecord, Look, Observer, TrainConfig};
use crate::units;
use anyhow::{Context, Result};
use prost::Message;
use proto::{Event, HParamsPluginData, HValue, Kind, SessionStartInfo, Summary, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The scalars written at each evaluation: their tags, and the field of
/// the metrics file (an [`EvalRecord`] in JSON) each one is.
pub const SCALARS: [(&str, &str); 7] = [
    ("loss/train", "J"),
    ("loss/validation", "val_loss"),
    ("loss/l2", "l2"),
    ("accuracy/train", "train_acc"),
    ("accuracy/validation", "val_acc"),
    ("accuracy/test", "test_acc"),
    ("learning_rate", "lr"),
];

/// An event file being written, as an [`Observer`] of a run. A write that
/// fails (a full disk) costs the events, not the run: the error is kept
/// for [`Board::failure`] and nothing more is written.
pub struct Board {
    out: Option<BufWriter<File>>,
    path: PathBuf,
    failure: Option<anyhow::Error>,
}

impl Board {
    /// Creates a new event file in `dir` (made if missing), starting with
    /// `cfg` as the run's hyper-parameters.
    pub fn create(dir: &Path, cfg: &TrainConfig) -> Result<Board> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // TensorBoard reads every file of a folder: each run gets its own,
        // however many start in the same second of one process.
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "events.out.tfevents.{}.scratchnet.{}.{}",
            now.as_secs(),
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut board = Board {
            out: Some(BufWriter::new(file)),
            path,
            failure: None,
        };
        board.write(Event {
            file_version: Some("brain.Event:2".into()),
            ..event(0, None)
        });
        board.write(event(0, Some(hparams(cfg, now.as_secs_f64())?)));
        board.flush();
        match board.failure.take() {
            Some(e) => Err(e),
            None => Ok(board),
        }
    }

    /// Why events stopped being written, if they did.
    pub fn failure(&self) -> Option<&anyhow::Error> {
        self.failure.as_ref()
    }

    fn write(&mut self, e: Event) {
        let Some(out) = &mut self.out else { return };
        if let Err(err) = out.write_all(&frame(&e.encode_to_vec())) {
            self.fail(err.into());
        }
    }

    fn flush(&mut self) {
        if let Some(Err(err)) = self.out.as_mut().map(|o| o.flush()) {
            self.fail(err.into());
        }
    }

    fn fail(&mut self, err: anyhow::Error) {
        self.out = None;
        let path = self.path.display();
        self.failure = Some(err.context(format!("TensorBoard's events: cannot write {path}")));
    }
}

impl Observer for Board {
    fn eval(&mut self, r: &EvalRecord) -> Result<()> {
        let fields = serde_json::to_value(r)?;
        let value = SCALARS
            .iter()
            .filter_map(|(tag, field)| {
                let v = fields.get(*field)?.as_f64()?;
                Some(Value {
                    tag: tag.to_string(),
                    simple_value: Some(v as f32),
                    ..Value::default()
                })
            })
            .collect();
        self.write(event(r.iter, Some(Summary { value })));
        self.flush();
        Ok(())
    }

    fn looks(&self) -> bool {
        self.out.is_some()
    }

    fn look(&mut self, look: &Look<'_>) -> Result<()> {
        let Some(grids) = units::grids(look.layout, look.params) else {
            return Ok(());
        };
        let mut value = Vec::new();
        for g in grids {
            let png = match g.png() {
                Ok(png) => png,
                Err(e) => {
                    self.fail(e);
                    return Ok(());
                }
            };
            value.push(Value {
                tag: format!("first_layer/{}", g.label.replace(' ', "_")),
                image: Some(proto::Image {
                    height: g.height as i32,
                    width: g.width as i32,
                    colorspace: 3,
                    encoded_image_string: png,
                }),
                ..Value::default()
            });
        }
        self.write(event(look.record.iter, Some(Summary { value })));
        self.flush();
        Ok(())
    }
}

/// An event at `step`, now.
fn event(step: usize, summary: Option<Summary>) -> Event {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Event {
        wall_time: now.as_secs_f64(),
        step: step as i64,
        file_version: None,
        summary,
    }
}

/// The hparams plugin's summary of a run's start: every setting of `cfg`
/// (lists as text, as in the TOML file), less where the files go.
fn hparams(cfg: &TrainConfig, start: f64) -> Result<Summary> {
    let settings = serde_json::to_value(cfg)?;
    let mut hparams = std::collections::BTreeMap::new();
    for (k, v) in settings.as_object().into_iter().flatten() {
        if k == "tensorboard" {
            continue;
        }
        let kind = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::Bool(b) => Kind::Bool(*b),
            serde_json::Value::Number(n) => Kind::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Kind::Text(s.clone()),
            other => Kind::Text(other.to_string()),
        };
        hparams.insert(k.clone(), HValue { kind: Some(kind) });
    }
    let content = HParamsPluginData {
        version: 0,
        session_start_info: Some(SessionStartInfo {
            hparams,
            start_time_secs: start,
        }),
    };
    Ok(Summary {
        value: vec![Value {
            tag: "_hparams_/session_start_info".into(),
            metadata: Some(proto::SummaryMetadata {
                plugin_data: Some(proto::PluginData {
                    plugin_name: "hparams".into(),
                    content: content.encode_to_vec(),
                }),
            }),
            ..Value::default()
        }],
    })
}

/// One record: length, its check, the bytes, their check.
fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// CRC-32C, masked as TensorFlow's records mask it (a CRC of bytes that
/// hold CRCs would otherwise be weak).
fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_framed_with_checked_lengths_and_bytes() {
        // CRC-32C's check value (RFC 3720), then TensorFlow's mask of it.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let masked = 0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc(b"123456789"), masked);
        let f = frame(b"abc");
        assert_eq!(f.len(), 3 + 16);
        assert_eq!(&f[..8], &3u64.to_le_bytes());
        assert_eq!(&f[8..12], &masked_crc(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&f[12..15], b"abc");
        assert_eq!(&f[15..], &masked_crc(b"abc").to_le_bytes());
    }
}
