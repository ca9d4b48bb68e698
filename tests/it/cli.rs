//! The `scratchnet` binary as a user runs it.

use crate::common;
use scratchnet::data::pixels::Pixels;
use std::path::Path;
use std::process::{Command, Output};

fn scratchnet(args: &[&str]) -> Output {
    common::run_in(common::root(), args)
}

/// Runs a command that must succeed; returns its standard output.
fn succeeds(args: &[&str]) -> String {
    let out = scratchnet(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails_with(args: &[&str], needles: &[&str]) {
    common::fails_in(common::root(), args, needles);
}

#[test]
fn impossible_options_are_named() {
    fails_with(&["train", "--keep", "1.5"], &["--keep", "(0, 1]"]);
    fails_with(&["train", "--lr", "0"], &["--lr", "> 0"]);
    fails_with(
        &["train", "--l2", "1,2"],
        &["--l2", "one per weight matrix (4)"],
    );
    fails_with(&["train", "--arch", "relu:0"], &["--arch", "width"]);
    fails_with(&["train", "--batch-size", "zero"], &["--batch-size"]);
    fails_with(&["train", "--optimizer", "rmsprop"], &["--optimizer"]);
    fails_with(
        &["train", "--data", "/no/such/dir"],
        &["/no/such/dir", "no such file"],
    );
    fails_with(&["train", "--threads", "0"], &["--threads"]);
    fails_with(&["train", "--rotate", "90"], &["--rotate"]);
    fails_with(
        &["train", "--elastic=-1"],
        &["--elastic -1: must be in [0, 8]"],
    );
    fails_with(&["train", "--patience", "0"], &["--patience", "at least 1"]);
}

/// Every bad value names the option and the value (and in a file its
/// line); a file takes a single value where the flag does; unknown names
/// get the nearest known one; the other format's file name is refused.
#[test]
fn options_speak_with_one_voice() {
    fails_with(
        &["train", "--lr", "inf"],
        &["'inf'", "--lr", "expected a finite number"],
    );
    fails_with(
        &["train", "--lr", "-1"],
        &["--lr -1: a learning rate must be a finite number > 0"],
    );
    // Settings named in a problem are spelled as flags too.
    fails_with(
        &["train", "--keep", "0.9,0.8"],
        &["--keep 0.9,0.8: 2 values; give 1 or one per hidden branch (3)"],
    );
    fails_with(
        &["train", "--preset", "nope"],
        &["--preset", "fast, best, seed"],
    );
    fails_with(
        &["train", "--keep", "0.9,nan"],
        &["'nan'", "--keep", "finite"],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = |text: &str| {
        let p = dir.path().join("run.toml");
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    for (text, want) in [
        (
            "epochs = 1\nkeep = 1.5\n",
            "run.toml, line 2: keep = [1.5]: keep probabilities must be in (0, 1]",
        ),
        (
            "lrr = 0.1\n",
            "--config RUN, line 1: unknown option `lrr`; did you mean `lr`?",
        ),
        ("init = \"he\"\n", "did you mean `init_scheme`?"),
        (
            "lr = inf\n",
            "--config RUN, line 1: lr: inf is not a finite number",
        ),
        (
            "lr = \"high\"\n",
            "line 1: lr = \"high\": invalid type: string \"high\", expected a number",
        ),
    ] {
        let path = file(text);
        fails_with(
            &["train", "--config", &path],
            &[&want.replace("RUN", &path)],
        );
    }
    // A single value for a list option, and the scheme under its one name.
    let out = succeeds(&[
        "train",
        "--config",
        &file("iters = 5\nkeep = 0.9\ninit_scheme = \"he\"\n"),
    ]);
    assert!(
        out.contains("keep = [0.9]") && out.contains("init_scheme = \"he\""),
        "{out}"
    );
    fails_with(
        &["train", "--save", "m.onnx"],
        &["--save m.onnx", "safetensors", "scratchnet export"],
    );
    fails_with(
        &["export", "m.safetensors", "--onnx", "x.safetensors"],
        &["--onnx x.safetensors", ".onnx"],
    );
}

/// What every run prints first is short: the preset and what differs from
/// it (readable by --config); -v prints every option. A run that ends at
/// chance says so.
#[test]
fn the_configuration_printed_is_short_and_a_run_at_chance_warns() {
    let out = succeeds(&["train", "--iters", "20", "--lr", "0.01"]);
    let block: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("--- configuration"))
        .skip(1)
        .take_while(|l| *l != "---")
        .collect();
    assert_eq!(
        block,
        ["preset = \"fast\"", "iters = 20", "lr = 0.01"],
        "{out}"
    );
    let out = succeeds(&["train", "--iters", "20", "-v"]);
    assert!(
        out.contains("momentum = 0.9") && out.contains("beta2 = 0.99"),
        "{out}"
    );
    let out = scratchnet(&["train", "--epochs", "1", "--lr", "1e9", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: the run ended near chance") && err.contains("1e9"),
        "{err}"
    );
}

#[test]
fn keep_best_records_the_selection_in_the_model_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let metrics = dir.path().join("m.jsonl");
    let args = [
        "train",
        "--iters",
        "100",
        "--batch-size",
        "200",
        "--lr",
        "0.05",
        "--lr-schedule",
        "constant",
        "--eval-every",
        "10",
        "--keep-best",
        "--rotate",
        "5",
        "--save",
        model.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
    ];
    let stdout = succeeds(&args);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let best = lines
        .iter()
        .max_by(|a, b| {
            let v = |r: &serde_json::Value| r["val_acc"].as_f64().unwrap();
            v(a).total_cmp(&v(b))
                .then(b["iter"].as_u64().cmp(&a["iter"].as_u64()))
        })
        .unwrap();
    let best_iter = best["iter"].as_u64().unwrap();
    assert_eq!(lines.last().unwrap()["best_iter"].as_u64(), Some(best_iter));
    assert!(
        stdout.contains(&format!("kept the weights of iteration {best_iter} ")),
        "{stdout}"
    );
    // The model's recorded accuracy is the kept weights', and eval agrees.
    let info = succeeds(&["info", model.to_str().unwrap()]);
    assert!(info.contains("keep_best = true"), "{info}");
    let test = best["test_acc"].as_f64().unwrap();
    let eval = succeeds(&["eval", "--model", model.to_str().unwrap()]);
    assert!(
        eval.contains(&format!("accuracy {test:.4}")),
        "{eval} vs {best}"
    );
    let bytes = std::fs::read(&model).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let selection: serde_json::Value = serde_json::from_str(&meta["scratchnet.selection"]).unwrap();
    assert_eq!(selection["best_iter"].as_u64(), Some(best_iter));
    assert_eq!(selection["last"]["iter"].as_u64(), Some(100));
}

#[test]
fn train_save_eval_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let metrics = dir.path().join("m.jsonl");
    let stdout = succeeds(&[
        "train",
        "--iters",
        "60",
        "--eval-every",
        "20",
        "--save",
        model.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("preset = \"fast\"")
            && stdout.contains("784 -> [relu 128 | tanh 64] -> relu 48 -> softmax 10"),
        "{stdout}"
    );
    assert!(
        stdout.contains("samples/s") && stdout.contains("saved model"),
        "{stdout}"
    );

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["iter"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [20, 40, 60]
    );
    for k in [
        "iter",
        "epoch",
        "J",
        "train_acc",
        "val_acc",
        "test_acc",
        "elapsed_s",
    ] {
        assert!(
            lines[0].get(k).is_some(),
            "metrics lack `{k}`: {}",
            lines[0]
        );
    }

    let stdout = succeeds(&["eval", "--model", model.to_str().unwrap()]);
    assert!(
        stdout.contains("accuracy 0.")
            && stdout.contains("confusion matrix")
            && stdout.contains("10000 images"),
        "{stdout}"
    );
    let info = succeeds(&["info", model.to_str().unwrap()]);
    for want in [
        "scratchnet model",
        "parameters  160474",
        "W11 [128, 784]",
        "steps       60",
        "preset = \"fast\"",
        "sha256 cfeddb84",
    ] {
        assert!(info.contains(want), "info lacks `{want}`: {info}");
    }
    // The eval accuracy is the test accuracy training reported last.
    let last = lines.last().unwrap()["test_acc"].as_f64().unwrap();
    assert!(
        stdout.contains(&format!("accuracy {last:.4}")),
        "{stdout} vs {last}"
    );
}

#[test]
fn config_file_sets_options_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(&cfg, "preset = \"seed\"\niters = 2\nkeep = [0.8]\n").unwrap();
    let stdout = succeeds(&["train", "--config", cfg.to_str().unwrap(), "--iters", "1"]);
    assert!(
        stdout.contains("iters = 1")
            && stdout.contains("keep = [0.8]")
            && stdout.contains("preset = \"seed\""),
        "{stdout}"
    );
    std::fs::write(&cfg, "keep_prob = 0.8\n").unwrap();
    fails_with(
        &["train", "--config", cfg.to_str().unwrap()],
        &["--config", "keep_prob"],
    );
}

#[test]
fn corrupt_model_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    fails_with(
        &["eval", "--model", bad.to_str().unwrap()],
        &["bad.safetensors", "safetensors"],
    );
    fails_with(
        &["eval", "--model", "/no/model.safetensors"],
        &["/no/model.safetensors", "cannot read"],
    );
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/mnist")
        .is_dir());
}

/// Ctrl-C (SIGINT) and SIGTERM (a batch scheduler's stop) each finish the
/// step, write a checkpoint and print the whole command that resumes the
/// run (its metrics file included), exiting with 128 + the signal; that
/// command finishes the run as an uninterrupted one ends, bit for bit,
/// with every evaluation in the metrics file once.
#[test]
fn a_signal_writes_a_checkpoint_and_the_printed_command_resumes_identically() {
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        interrupted_and_resumed(signal, status);
    }
}

fn interrupted_and_resumed(signal: &str, status: i32) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = [
        "train",
        "--preset",
        "seed",
        "--iters",
        "40",
        "--eval-every",
        "5",
        "--threads",
        "2",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(run)
        .args([
            "--checkpoint",
            &p("ck.safetensors"),
            "--save",
            &p("b.safetensors"),
        ])
        .args(["--metrics", &p("b.jsonl")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has started (the configuration block is printed first).
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.starts_with("---\n") && line != "---" {
        line.clear();
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let result = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(status), "SIG{signal}: {err}");
    let hint = err
        .lines()
        .find_map(|l| l.strip_prefix("resume with: "))
        .unwrap_or_else(|| panic!("SIG{signal}: no resume command in {err}"));
    let want = format!(
        "scratchnet train --resume {} --save {} --metrics {} --checkpoint {}",
        p("ck.safetensors"),
        p("b.safetensors"),
        p("b.jsonl"),
        p("ck.safetensors")
    );
    assert_eq!(hint, want, "SIG{signal}");
    assert!(err.contains("checkpoint written to"), "{err}");
    assert!(
        !Path::new(&p("b.safetensors")).exists(),
        "no model is saved from an interrupted run"
    );

    let words: Vec<&str> = hint.split(' ').skip(1).collect();
    let stdout = succeeds(&words);
    assert!(
        stdout.contains("resuming") && stdout.contains("done: 40 steps"),
        "{stdout}"
    );
    succeeds(
        &[
            &run[..],
            &["--save", &p("a.safetensors"), "--metrics", &p("a.jsonl")],
        ]
        .concat(),
    );
    let a = scratchnet::model_io::Model::load(Path::new(&p("a.safetensors"))).unwrap();
    let b = scratchnet::model_io::Model::load(Path::new(&p("b.safetensors"))).unwrap();
    assert!(
        a.params == b.params,
        "SIG{signal}: interrupted + resumed weights differ from an uninterrupted run's"
    );
    let iters = |f: &str| -> Vec<u64> {
        let text = std::fs::read_to_string(p(f)).unwrap();
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["iter"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        iters("b.jsonl"),
        iters("a.jsonl"),
        "SIG{signal}: the metrics of both parts"
    );
    fails_with(
        &["train", "--resume", &p("ck.safetensors"), "--lr", "0.1"],
        &["--resume", "--lr", "only a longer --epochs or --iters"],
    );
}

/// `--resume` with a longer `--iters` continues the run to the new length
/// (the seed preset's rate is constant, so it ends as a run of that length
/// from the start does); a shorter one is refused.
#[test]
fn resume_with_more_steps_extends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = ["train", "--preset", "seed", "--eval-every", "1000", "-q"];
    let ck = [
        "--checkpoint",
        &p("ck.safetensors"),
        "--checkpoint-every",
        "12",
    ];
    succeeds(&[&run[..], &["--iters", "12"], &ck].concat());
    let out = succeeds(&[
        "train",
        "--resume",
        &p("ck.safetensors"),
        "--iters",
        "20",
        "--save",
        &p("b.safetensors"),
    ]);
    assert!(out.contains("extended from 12 to 20 steps"), "{out}");
    succeeds(&[&run[..], &["--iters", "20", "--save", &p("a.safetensors")]].concat());
    let a = scratchnet::model_io::Model::load(Path::new(&p("a.safetensors"))).unwrap();
    let b = scratchnet::model_io::Model::load(Path::new(&p("b.safetensors"))).unwrap();
    assert!(
        a.params == b.params,
        "the extended run differs from a 20-step run"
    );
    fails_with(
        &["train", "--resume", &p("ck.safetensors"), "--iters", "8"],
        &["the run has 12 steps", "a shorter one cannot"],
    );
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = succeeds(&["completions", shell]);
        assert!(
            out.contains("scratchnet") && out.contains("checkpoint-every"),
            "{shell}: {out}"
        );
    }
    fails_with(&["completions", "tcsh"], &["tcsh", "possible values"]);
}

#[test]
fn sweep_ranks_trials_saves_the_best_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");
    let o = out.to_str().unwrap();
    let first = succeeds(&[
        "sweep", "--trials", "3", "--iters", "30", "--out", o, "--seed", "5",
    ]);
    assert!(
        first.contains("trial   0") && first.contains("best: trial"),
        "{first}"
    );
    let before = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert_eq!(before.lines().count(), 3);

    let second = succeeds(&[
        "sweep", "--trials", "4", "--iters", "30", "--out", o, "--seed", "5",
    ]);
    assert!(
        second.contains("3 finished trials found")
            && second.contains("trial   3")
            && !second.contains("trial   0:"),
        "{second}"
    );
    let after = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert!(
        after.starts_with(&before),
        "finished trials are kept as they were"
    );
    assert_eq!(after.lines().count(), 4);

    // The CSV is sorted by validation accuracy, best first.
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let vals: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    assert_eq!(vals.len(), 4);
    assert!(vals.windows(2).all(|w| w[0] >= w[1]), "{csv}");
    let info = succeeds(&["info", out.join("best.safetensors").to_str().unwrap()]);
    assert!(info.contains(&format!("val {:.4}", vals[0])), "{info}");

    fails_with(&["sweep", "--lr", "0:1", "--out", o], &["--lr", "> 0"]);
    fails_with(&["sweep", "--keep", "0.5:1.5", "--out", o], &["--keep"]);
    // Other settings in the same folder would mix two searches' results.
    fails_with(
        &[
            "sweep", "--trials", "4", "--iters", "40", "--out", o, "--seed", "5",
        ],
        &[
            "holds a sweep with other settings",
            "iters 40 (was 30)",
            "another --out",
        ],
    );
    fails_with(
        &[
            "sweep",
            "--trials",
            "4",
            "--iters",
            "30",
            "--out",
            o,
            "--seed",
            "5",
            "--lr",
            "1e-3:1e-2",
        ],
        &["lr 0.001:0.01 (was 0.0001:0.01)"],
    );
    fails_with(
        &[
            "sweep", "--trials", "4", "--preset", "seed", "--iters", "30", "--out", o, "--seed",
            "5",
        ],
        &["preset \"seed\" (was \"fast\")"],
    );
    assert_eq!(
        std::fs::read_to_string(out.join("results.jsonl")).unwrap(),
        after
    );
}

#[test]
fn output_piped_into_a_closed_reader_ends_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn plot_draws_curves_confusion_and_misclassified_digits() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    succeeds(&[
        "train",
        "--iters",
        "300",
        "--eval-every",
        "50",
        "-q",
        "--metrics",
        &p("m.jsonl"),
        "--save",
        &p("m.safetensors"),
    ]);
    let out = succeeds(&[
        "plot",
        "--metrics",
        &p("m.jsonl"),
        "--model",
        &p("m.safetensors"),
        "--out",
        &p("plots"),
    ]);
    assert!(
        out.contains("curves.png") && out.contains("misclassified.png"),
        "{out}"
    );
    for (name, size) in [
        ("curves.png", (1200, 500)),
        ("confusion.png", (760, 700)),
        ("misclassified.png", (1000, 1140)),
    ] {
        let img = image::open(dir.path().join("plots").join(name))
            .unwrap()
            .to_rgb8();
        assert_eq!(img.dimensions(), size, "{name}");
        // Something was drawn: many distinct colours, not a blank page.
        let colours: std::collections::HashSet<_> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 20, "{name} has {} colours", colours.len());
    }
    for name in ["curves.svg", "confusion.svg"] {
        let svg = std::fs::read_to_string(dir.path().join("plots").join(name)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<text"), "{name}");
    }
    // Two runs compared: one line each, named by file.
    succeeds(&[
        "train",
        "--iters",
        "100",
        "--eval-every",
        "25",
        "-q",
        "--lr",
        "0.004",
        "--metrics",
        &p("faster.jsonl"),
    ]);
    let out = succeeds(&[
        "plot",
        "--compare",
        &p("m.jsonl"),
        &p("faster.jsonl"),
        "--out",
        &p("plots"),
    ]);
    assert!(
        out.contains("frontier.png") && out.contains("frontier.svg"),
        "{out}"
    );
    let img = image::open(dir.path().join("plots/frontier.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(img.dimensions(), (900, 560));
    let svg = std::fs::read_to_string(dir.path().join("plots/frontier.svg")).unwrap();
    assert!(
        svg.contains(">\nm\n<") && svg.contains(">\nfaster\n<"),
        "legend names the runs"
    );
    std::fs::write(p("bad.jsonl"), "{\"iter\": 1}\n").unwrap();
    fails_with(
        &["plot", "--metrics", &p("bad.jsonl"), "--out", &p("plots")],
        &["bad.jsonl:1", "not a metrics record"],
    );
    fails_with(
        &[
            "plot",
            "--compare",
            &p("m.jsonl"),
            &p("bad.jsonl"),
            "--out",
            &p("plots"),
        ],
        &["bad.jsonl:1", "not a metrics record"],
    );
    fails_with(&["plot", "--out", &p("plots")], &["--metrics"]);
}

#[test]
fn quiet_prints_only_the_result_and_verbose_adds_detail() {
    let quiet = succeeds(&["train", "--iters", "20", "-q"]);
    assert_eq!(quiet.lines().count(), 1, "{quiet}");
    assert!(quiet.starts_with("done: 20 steps"), "{quiet}");
    let verbose = succeeds(&["train", "--verbose", "--iters", "20"]);
    assert!(
        verbose.contains("sha256 cfeddb84") && verbose.contains("  lr "),
        "{verbose}"
    );
    // Piped output carries no terminal control sequences.
    assert!(!verbose.contains('\x1b'), "escape codes in piped output");
    fails_with(&["train", "-q", "-v"], &["--quiet", "--verbose"]);
    // -v is only where it means something.
    fails_with(&["eval", "-v"], &["unexpected argument '-v'"]);
}

/// A model is named first or by --model in every command that reads one,
/// and -q leaves only the result.
#[test]
fn every_command_takes_the_model_first_and_q_means_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    succeeds(&[
        "train",
        "--iters",
        "30",
        "-q",
        "--save",
        &p("m.safetensors"),
    ]);
    let m = p("m.safetensors");
    let quiet = succeeds(&["eval", &m, "-q"]);
    assert!(
        quiet.starts_with("accuracy ") && quiet.lines().count() == 1,
        "{quiet}"
    );
    assert_eq!(succeeds(&["eval", "--model", &m, "-q"]), quiet);
    assert!(succeeds(&["info", &m]).contains("parameters  160474"));
    assert!(succeeds(&["info", "--model", &m]).contains("parameters  160474"));
    let digit = "assets/examples/digit-0-label-7.pgm";
    let named_first = succeeds(&["predict", &m, digit]);
    assert_eq!(named_first, succeeds(&["predict", "--model", &m, digit]));
    assert_eq!(succeeds(&["export", &m, "--onnx", &p("m.onnx"), "-q"]), "");
    assert_eq!(succeeds(&["plot", &m, "--out", &p("plots"), "-q"]), "");
    assert!(Path::new(&p("plots/confusion.png")).is_file());
    // --data DIR is the data, not a model.
    let data = succeeds(&["info", "--data", "data/mnist"]);
    assert!(data.contains("data/mnist (--data; present)"), "{data}");
    fails_with(
        &["eval"],
        &["give a model: `scratchnet eval model.safetensors`"],
    );
}

/// Without the `cuda` feature, every command that takes `--device` says how
/// to get CUDA support (with it, tests/gpu.rs checks the no-GPU message).
#[cfg(not(feature = "cuda"))]
#[test]
fn device_cuda_without_the_feature_says_how_to_build_it() {
    for args in [
        &["train", "--device", "cuda"][..],
        &["eval", "--model", "m.safetensors", "--device", "cuda"],
        &[
            "predict",
            "--model",
            "m.safetensors",
            "--device",
            "cuda",
            "x.png",
        ],
        &["bench", "--device", "cuda"],
    ] {
        fails_with(args, &["--device cuda", "--features cuda"]);
    }
    fails_with(&["train", "--device", "tpu"], &["--device", "cpu, cuda"]);
}

/// `bench --json`: each workload's work is the products' FLOP over the
/// nonzero pixels of its images (a known answer computed here from the
/// bundled MNIST for the notebook's network), and its share of the
/// multiply-add peak is its GFLOP/s over the peak measured in the run.
#[test]
fn bench_states_the_work_done_and_its_share_of_the_peak() {
    let out = succeeds(&[
        "bench",
        "--runs",
        "1",
        "--json",
        "--threads",
        "2",
        "--data",
        "data/mnist",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let peak = v["peak_gflops"].as_f64().unwrap();
    assert!(peak > 0.0, "{v}");
    let d = common::mnist();
    let nonzero = |images: &Pixels| images.floats().iter().filter(|&&p| p != 0.0).count() as f64;
    // Per image: the first layer (784 -> 192) over its nonzero pixels,
    // forward and weight gradient; 192 -> 48 -> 10 dense, forward, weight
    // gradient and gradient to the input. Two FLOP per multiply-add.
    let (rest, width) = (192.0 * 48.0 + 48.0 * 10.0, 192.0);
    let train = |nz: f64, n: f64| 2.0 * (2.0 * nz * width + 3.0 * rest * n);
    let expected = [
        train(nonzero(&d.train.images), 50_000.0),
        train(nonzero(&d.train.images) + nonzero(&d.val.images), 60_000.0),
        2.0 * (nonzero(&d.test.images) * width + 10_000.0 * rest),
    ];
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    for (name, start) in names
        .iter()
        .zip(["full-batch", "minibatch", "inference", "GEMM"])
    {
        assert!(name.starts_with(start), "{names:?}");
    }
    assert_eq!(names.len(), 4, "{names:?}");
    for (row, want) in rows.iter().zip(expected) {
        let got = row["gflop"].as_f64().unwrap() * 1e9;
        assert!(
            (got - want).abs() < 1e-9 * want,
            "{row}: {got} FLOP, expected {want}"
        );
    }
    for row in rows {
        let share = row["of_peak"].as_f64().unwrap();
        let gflops = row["gflops"].as_f64().unwrap();
        assert!((share - gflops / peak).abs() < 1e-12, "{row}");
    }
}
