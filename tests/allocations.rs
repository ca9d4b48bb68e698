//! Minibatch steps after the first epoch touch no fresh memory: the
//! buffers a step needs are kept from the step before, and what a step
//! allocates (the matrix-product crate's packing space, a few small lists)
//! is given back within the step and reused by the next. Fresh pages cost
//! faults, which on the virtual machines this runs on cost more than the
//! arithmetic. Its own test binary: the counts are the whole process's.

use scratchnet::backend::Target;
use scratchnet::data::Dataset;
use scratchnet::train::{TrainConfig, Trainer};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// The command's allocator, counting allocations and the bytes held.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to mimalloc unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        mimalloc::MiMalloc.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        mimalloc::MiMalloc.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Minor page faults of the process so far (fresh pages touched).
fn page_faults() -> i64 {
    // SAFETY: getrusage writes the zeroed struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut u), 0);
        u.ru_minflt
    }
}

/// Allocations per minibatch step seen on this code: the `gemm` crate's
/// packing space for each of the six dense products, and short lists (row
/// blocks, partial sums); 23-26 measured. The bound catches an allocation
/// per image or per row (128 more a step), not one list more.
const MOST_PER_STEP: usize = 32;

#[test]
fn minibatch_steps_after_the_first_epoch_touch_no_fresh_memory() {
    let data = Dataset::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
        Some(10_000),
    )
    .expect("bundled MNIST in data/mnist");
    // Two computing threads, as the command runs with --threads 2: a pool
    // as wide as the machine would let a thread that first steals work
    // during the counted steps fault in its own fresh heap.
    let pool = scratchnet::tensor::fp::pool(2).build().unwrap();
    for (what, options) in [
        ("the default preset", json!({})),
        ("the best preset (distortions)", json!({"preset": "best"})),
        (
            "SGD, dropout per sample",
            json!({"optimizer": "sgd", "dropout": "sample", "batch_size": 100}),
        ),
    ] {
        let cfg = TrainConfig::resolve(None, options).unwrap();
        let (mut per_step, grown, faults) = pool.install(|| {
            let mut t = Trainer::new(cfg, &data, Target::cpu(2), None).unwrap();
            let epoch = t.steps_per_epoch();
            let counted = epoch.clamp(60, 200);
            let mut per_step = Vec::with_capacity(counted);
            for _ in 0..epoch {
                t.train_step().unwrap();
            }
            let (held, faults) = (HELD.load(Ordering::Relaxed), page_faults());
            for _ in 0..counted {
                let before = ALLOCATIONS.load(Ordering::Relaxed);
                t.train_step().unwrap();
                per_step.push(ALLOCATIONS.load(Ordering::Relaxed) - before);
            }
            (
                per_step,
                HELD.load(Ordering::Relaxed) - held,
                page_faults() - faults,
            )
        });
        per_step.sort();
        let (counted, most) = (per_step.len(), per_step[per_step.len() - 1]);
        println!(
            "{what}: {counted} steps after the first epoch: {faults} page faults, {grown} bytes more held, allocations per step {}..{most}",
            per_step[0],
        );
        assert_eq!(faults, 0, "{what}: page faults");
        assert_eq!(grown, 0, "{what}: bytes held");
        assert!(
            most <= MOST_PER_STEP,
            "{what}: {most} allocations in a step"
        );
    }
}
