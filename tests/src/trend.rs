//! Whether a series sampled over a soak grows without bound: the soak
//! bench's judgement, kept here so that it is tested.
//!
//! A leak grows at a steady rate to the end; a high-water mark (an
//! allocator's pools, a cache filling to its bound) grows ever more slowly
//! and levels off. Both can be steep over the first minutes, so a series is
//! judged on the second half of the run (the first half is the ramp and the
//! warm-up) and on its last quarter: it is growing without bound when the
//! second half's slope would add half the series' mean again within a day,
//! and the last quarter still grows at least half as fast as the quarter
//! before it, at a rate that would also add half the mean within a day.

/// Least-squares slope of `ys` over `xs`.
pub fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// The judgement of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Slope per hour over the second half, and over the last quarter.
    pub per_hour: f64,
    pub last_quarter_per_hour: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Steady,
    /// Grew in the second half, but ever more slowly: a high-water mark.
    LevelsOff,
    Growing,
    /// Too few samples were read to say.
    Unread,
}

/// Judges `ys` sampled at `hours` (the whole run; unread samples are NaN
/// and left out).
pub fn judge(hours: &[f64], ys: &[f64]) -> Trend {
    let points: Vec<(f64, f64)> = hours
        .iter()
        .zip(ys)
        .filter(|(_, y)| y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    let part = |from: usize, to: usize| -> (Vec<f64>, Vec<f64>) {
        points[from..to].iter().copied().unzip()
    };
    let n = points.len();
    if n < 8 {
        return Trend {
            per_hour: f64::NAN,
            last_quarter_per_hour: f64::NAN,
            verdict: Verdict::Unread,
        };
    }
    let (hx, hy) = part(n / 2, n);
    let (qx3, qy3) = part(n / 2, n * 3 / 4);
    let (qx4, qy4) = part(n * 3 / 4, n);
    let per_hour = slope(&hx, &hy);
    let third = slope(&qx3, &qy3);
    let last = slope(&qx4, &qy4);
    let mean = hy.iter().sum::<f64>() / hy.len() as f64;
    let a_day_adds_half = |per_hour: f64| per_hour * 24.0 > 0.5 * mean.abs().max(1.0);
    let verdict = if !a_day_adds_half(per_hour) {
        Verdict::Steady
    } else if a_day_adds_half(last) && last >= 0.5 * third {
        Verdict::Growing
    } else {
        Verdict::LevelsOff
    };
    Trend {
        per_hour,
        last_quarter_per_hour: last,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten minutes, a sample every 10 s.
    fn hours() -> Vec<f64> {
        (0..60).map(|i| f64::from(i) * 10.0 / 3600.0).collect()
    }

    #[test]
    fn a_steady_leak_is_growing() {
        // 100 MiB plus 1 MiB a minute: 60 MiB an hour, to the end.
        let ys: Vec<f64> = hours().iter().map(|h| 100.0 + 60.0 * h).collect();
        assert_eq!(judge(&hours(), &ys).verdict, Verdict::Growing);
    }

    #[test]
    fn a_high_water_mark_levels_off() {
        // Rising towards 160 with a time constant of two minutes.
        let ys: Vec<f64> = hours()
            .iter()
            .map(|h| 160.0 - 150.0 * (-h * 30.0).exp())
            .collect();
        let t = judge(&hours(), &ys);
        assert!(t.per_hour > 0.0, "{t:?}");
        assert_eq!(t.verdict, Verdict::LevelsOff, "{t:?}");
    }

    #[test]
    fn a_flat_series_is_steady_and_noise_does_not_count() {
        let ys: Vec<f64> = (0..60).map(|i| 500.0 + f64::from(i % 3)).collect();
        assert_eq!(judge(&hours(), &ys).verdict, Verdict::Steady);
    }

    #[test]
    fn unread_samples_are_left_out_and_too_few_cannot_be_judged() {
        let mut ys: Vec<f64> = hours().iter().map(|h| 100.0 + 60.0 * h).collect();
        for y in ys.iter_mut().step_by(2) {
            *y = f64::NAN;
        }
        assert_eq!(judge(&hours(), &ys).verdict, Verdict::Growing);
        let none = vec![f64::NAN; 60];
        assert_eq!(judge(&hours(), &none).verdict, Verdict::Unread);
    }
}
