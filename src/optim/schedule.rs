//! Learning-rate schedules and the notebook's regularisation schedule.

use serde::{Deserialize, Serialize};

/// How the learning rate changes over training.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LrSchedule {
    /// The notebook's: the same rate throughout.
    Constant,
    /// Half a cosine from the base rate down to `floor` × base at the last step.
    Cosine { floor: f32 },
    /// Multiply by `factor` every `every` steps.
    Step { every: usize, factor: f32 },
}

impl LrSchedule {
    /// The rate at step `t` (0-based) of `total`.
    pub fn lr(&self, base: f32, t: usize, total: usize) -> f32 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine { floor } => {
                let progress = if total > 1 {
                    t as f64 / (total - 1) as f64
                } else {
                    0.0
                };
                let c = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                (base as f64 * (floor as f64 + (1.0 - floor as f64) * c)) as f32
            }
            LrSchedule::Step { every, factor } => base * factor.powi((t / every.max(1)) as i32),
        }
    }
}

/// The notebook's schedule for L2 factors: after step i with i % every == 0
/// (i = 0 included), every factor is multiplied by sqrt(i/every + 2) / 2.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegSchedule {
    /// 0 turns the schedule off.
    pub every: usize,
}

impl RegSchedule {
    /// Applies the schedule after step `i` (0-based).
    pub fn after_step(&self, i: usize, factors: &mut [f32]) {
        if self.every > 0 && i.is_multiple_of(self.every) {
            let m = ((i / self.every) as f64 + 2.0).sqrt() / 2.0;
            factors.iter_mut().for_each(|l| *l = (*l as f64 * m) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reg_schedule_known_answer() {
        // The notebook: at i = 0 factors shrink by sqrt(2)/2, at 1000 by sqrt(3)/2, ...
        let s = RegSchedule { every: 1000 };
        let mut f = vec![1.19f32, 2.22];
        s.after_step(0, &mut f);
        assert!((f[0] as f64 - 1.19 * 0.5f64.sqrt()).abs() < 1e-6);
        s.after_step(1, &mut f);
        s.after_step(999, &mut f);
        assert!(
            (f[0] as f64 - 1.19 * 0.5f64.sqrt()).abs() < 1e-6,
            "no change between multiples"
        );
        s.after_step(1000, &mut f);
        s.after_step(2000, &mut f);
        let want = 2.22 * (2f64.sqrt() / 2.0) * (3f64.sqrt() / 2.0) * (4f64.sqrt() / 2.0);
        assert!((f[1] as f64 - want).abs() < 1e-5, "{} vs {want}", f[1]);
        let mut g = vec![1.0f32];
        RegSchedule { every: 0 }.after_step(0, &mut g);
        assert_eq!(g, [1.0]);
    }

    #[test]
    fn lr_schedules_known_answers() {
        assert_eq!(LrSchedule::Constant.lr(0.1, 50, 100), 0.1);
        let c = LrSchedule::Cosine { floor: 0.0 };
        assert!((c.lr(0.1, 0, 101) - 0.1).abs() < 1e-7);
        assert!((c.lr(0.1, 50, 101) - 0.05).abs() < 1e-7);
        assert!(c.lr(0.1, 100, 101).abs() < 1e-7);
        let s = LrSchedule::Step {
            every: 10,
            factor: 0.5,
        };
        assert_eq!(s.lr(1.0, 9, 100), 1.0);
        assert_eq!(s.lr(1.0, 25, 100), 0.25);
    }
}
