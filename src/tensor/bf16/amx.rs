//! The product on AMX tiles: `tdpbf16ps` multiplies a 16x32 tile of A by a
//! 32x16 tile of B (in pairs of k) into a 16x16 tile of float32 sums.
//! Eight tiles: four sums (a 32x32 block of the result), two of A, two of
//! B. The instructions have no intrinsics on stable Rust, so they are
//! written as `asm!`; each thread configures its tiles at the start of a
//! product and releases them at the end.

use super::layout::{PairsView, Part, TiledView, CHUNK, PANEL, TILE_K, TILE_ROWS};
use std::arch::asm;
use std::time::Instant;

/// `arch_prctl` asks for the tiles' state, which Linux gives a process only
/// when asked (the state is 8 KB per thread).
const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
const XFEATURE_XTILEDATA: libc::c_long = 18;

/// Whether the CPU has AMX with bfloat16 (CPUID leaf 7: AMX-TILE and
/// AMX-BF16) and Linux grants this process the tiles (process-wide).
pub(super) fn request() -> bool {
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    let (tile, bf16) = (edx & (1 << 24) != 0, edx & (1 << 22) != 0);
    // SAFETY: arch_prctl with these arguments only changes the process's
    // permission for the tile state; it fails harmlessly where unsupported.
    tile && bf16
        && unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        } == 0
}

/// Palette 1; eight tiles of 16 rows of 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

const fn config() -> Config {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = TILE_ROWS as u8;
        t += 1;
    }
    Config(c)
}

static CONFIG: Config = config();

/// The tiles of this thread, configured; released when dropped.
struct Tiles;

impl Tiles {
    /// # Safety
    /// The process must have the tiles' permission ([`request`]).
    unsafe fn configure() -> Tiles {
        // SAFETY: a valid palette-1 configuration, 64 bytes on a line.
        unsafe { asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
        Tiles
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: releases this thread's tile state; no tile is in use after.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// `tmm{T} = 0`.
macro_rules! zero {
    ($t:literal) => {
        asm!(concat!("tilezero tmm", $t), options(nostack, nomem))
    };
}

/// `tmm{T}` = 16 rows of 64 bytes from `p`, `stride` bytes apart.
macro_rules! load {
    ($t:literal, $p:expr, $stride:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{} + {}*1]"), in(reg) $p, in(reg) $stride,
            options(nostack, readonly))
    };
}

/// 16 rows of 64 bytes of `tmm{T}` to `p`, `stride` bytes apart.
macro_rules! store {
    ($t:literal, $p:expr, $stride:expr) => {
        asm!(concat!("tilestored [{} + {}*1], tmm", $t), in(reg) $p, in(reg) $stride,
            options(nostack))
    };
}

/// `tmm{C} += tmm{A} · tmm{B}` (bfloat16 pairs into float32).
macro_rules! dot {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(
            concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem)
        )
    };
}

/// Where a 16x16 tile of the result lives: in the result itself, or (at
/// its edges) in a scratch tile copied in and out.
struct Place {
    ptr: *mut f32,
    stride: usize,
    /// Rows and columns of the tile inside the result, where partial.
    partial: Option<(usize, usize)>,
}

/// The result tile at row tile `rt` and panel `p` (both of the whole
/// product) of `part`; `None` outside it.
fn place(part: &mut Part<'_>, rt: usize, p: usize) -> Option<Place> {
    let r = rt * TILE_ROWS;
    if r >= part.rows.end || !part.panels.contains(&p) {
        return None;
    }
    let rows = TILE_ROWS.min(part.rows.end - r);
    let (out, stride, cols) = part.at(r, p);
    Some(Place {
        ptr: out.as_mut_ptr(),
        stride: stride * 4,
        partial: (rows < TILE_ROWS || cols < PANEL).then_some((rows, cols)),
    })
}

/// 16x16 float32, on a line: the edges' scratch.
#[repr(C, align(64))]
struct Scratch([f32; 256]);

impl Place {
    /// Where a store goes: the result itself, or (to add to it, or at an
    /// edge) `s`, then [`Place::write`].
    fn target(&self, s: &mut Scratch, add: bool) -> (*mut f32, usize) {
        match (self.partial, add) {
            (None, false) => (self.ptr, self.stride),
            _ => (s.0.as_mut_ptr(), 64),
        }
    }

    /// Writes (or adds) a tile stored in `s` into the result.
    fn write(&self, s: &Scratch, add: bool) {
        if self.partial.is_none() && !add {
            return;
        }
        let (rows, cols) = self.partial.unwrap_or((TILE_ROWS, PANEL));
        for r in 0..rows {
            // SAFETY: row r's first `cols` values lie inside the result
            // (`place`), and nothing else refers to them now.
            let out =
                unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride / 4), cols) };
            let sums = &s.0[r * 16..][..cols];
            match add {
                true => out.iter_mut().zip(sums).for_each(|(o, v)| *o += v),
                false => out.copy_from_slice(sums),
            }
        }
    }
}

/// Bytes of B a thread may hold in L2 while its rows of A pass once.
const L2_SHARE: usize = 1 << 20;

/// `part = a · b` for its rows of A and panels of B, a 32x32 block
/// of the result (four tiles) at a time, k in chunks of [`CHUNK`] tiles:
/// a pair of row tiles of A (2 KB a tile of k) stays in L1 while the
/// panels of B pass over it from L2. Where the part's B is larger than
/// [`L2_SHARE`] (a weight gradient's k of 50,000 images), the whole product
/// goes a chunk of k at a time, so that A too is read once. Tiles of A that
/// hold only zeros are skipped.
///
/// # Safety
/// The process must have the tiles ([`request`]); `a`, `b` and `part`
/// must agree in shape, and `part` lie inside the result (checked by
/// [`super::product`]); `k` is not zero.
pub(super) unsafe fn product(mut part: Part<'_>, a: TiledView<'_>, b: PairsView<'_>) {
    // SAFETY: the caller's promise.
    let _tiles = unsafe { Tiles::configure() };
    let kt = a.k_tiles();
    let (r0, r1) = (
        part.rows.start / TILE_ROWS,
        part.rows.end.div_ceil(TILE_ROWS),
    );
    let (p0, p1) = (part.panels.start, part.panels.end);
    let mut scratch: [Scratch; 4] = std::array::from_fn(|_| Scratch([0.0; 256]));
    let b_bytes = (p1 - p0) * kt * TILE_ROWS * TILE_K * 2;
    let k_block = if b_bytes <= L2_SHARE { kt } else { CHUNK };
    for kb in (0..kt).step_by(k_block) {
        for rt in (r0..r1).step_by(2) {
            for p in (p0..p1).step_by(2) {
                let places = [(rt, p), (rt, p + 1), (rt + 1, p), (rt + 1, p + 1)]
                    .map(|(r, q)| place(&mut part, r, q));
                for k0 in (kb..kt.min(kb + k_block)).step_by(CHUNK) {
                    let k1 = kt.min(k0 + CHUNK);
                    // SAFETY: every pointer below is to a whole tile (of the
                    // result, a scratch tile, or A and B, whose layouts pad to
                    // whole tiles); the tiles are configured.
                    unsafe {
                        zero!(0);
                        zero!(1);
                        zero!(2);
                        zero!(3);
                        for j in k0..k1 {
                            let (a0, nz0) = a.tile(rt, j);
                            let (a1, nz1) = match rt + 1 < r1 {
                                true => a.tile(rt + 1, j),
                                false => (a0, false),
                            };
                            if !nz0 && !nz1 {
                                continue;
                            }
                            load!(4, a0.as_ptr(), 64usize);
                            load!(5, a1.as_ptr(), 64usize);
                            let second = p + 1 < p1;
                            load!(6, b.tile(p, j).as_ptr(), 64usize);
                            if second {
                                load!(7, b.tile(p + 1, j).as_ptr(), 64usize);
                            }
                            if nz0 {
                                dot!(0, 4, 6);
                                if second {
                                    dot!(1, 4, 7);
                                }
                            }
                            if nz1 {
                                dot!(2, 5, 6);
                                if second {
                                    dot!(3, 5, 7);
                                }
                            }
                        }
                        sums_out(&places, &mut scratch, k0 > 0);
                    }
                }
            }
        }
    }
}

/// Stores the four sums where they belong, or adds them there (`add`,
/// after the first chunk).
///
/// # Safety
/// Tiles configured; the places point at whole tiles.
unsafe fn sums_out(places: &[Option<Place>; 4], scratch: &mut [Scratch; 4], add: bool) {
    for (i, (place, s)) in places.iter().zip(scratch.iter_mut()).enumerate() {
        let Some(place) = place else { continue };
        let (p, stride) = place.target(s, add);
        // SAFETY: the caller's promise.
        unsafe {
            match i {
                0 => store!(0, p, stride),
                1 => store!(1, p, stride),
                2 => store!(2, p, stride),
                _ => store!(3, p, stride),
            }
        }
        place.write(s, add);
    }
}

/// GFLOP/s of `tdpbf16ps` on this thread, tiles in registers, for about
/// `seconds`.
///
/// # Safety
/// The process must have the tiles' permission ([`request`]).
pub(super) unsafe fn peak(seconds: f64) -> f64 {
    let zeros = Scratch([0.0; 256]);
    // SAFETY: the caller's promise; the tiles load from a whole zero tile.
    unsafe {
        let _tiles = Tiles::configure();
        for t in 0..8 {
            let p = zeros.0.as_ptr();
            match t {
                0 => load!(0, p, 64usize),
                1 => load!(1, p, 64usize),
                2 => load!(2, p, 64usize),
                3 => load!(3, p, 64usize),
                4 => load!(4, p, 64usize),
                5 => load!(5, p, 64usize),
                6 => load!(6, p, 64usize),
                _ => load!(7, p, 64usize),
            }
        }
        let (start, mut rounds) = (Instant::now(), 0u64);
        while start.elapsed().as_secs_f64() < seconds {
            for _ in 0..10_000 {
                dot!(0, 4, 6);
                dot!(1, 4, 7);
                dot!(2, 5, 6);
                dot!(3, 5, 7);
            }
            rounds += 1;
        }
        // Each tdpbf16ps: 16 x 16 sums of 32 products, two flops each.
        rounds as f64 * 40_000.0 * 16_384.0 / start.elapsed().as_secs_f64() / 1e9
    }
}
