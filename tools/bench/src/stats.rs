//! Order statistics of a series of samples. Percentiles interpolate linearly
//! between the two nearest ranks (numpy's default), so the median of an even
//! count is the mean of the middle two. scripts/bench-report.py uses the
//! same definition.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

/// The `q`-quantile (0..=1) of sorted, non-empty `s`.
pub fn quantile(s: &[f64], q: f64) -> f64 {
    assert!(!s.is_empty(), "quantile of no samples");
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

impl Summary {
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Some(Summary {
            n: s.len(),
            min: s[0],
            p10: quantile(&s, 0.10),
            median: quantile(&s, 0.5),
            p90: quantile(&s, 0.90),
            max: s[s.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
    }

    #[test]
    fn percentiles_interpolate() {
        let s: Vec<f64> = (0..=10).map(f64::from).collect();
        let sum = Summary::of(&s).unwrap();
        assert_eq!((sum.min, sum.p10, sum.p90, sum.max), (0.0, 1.0, 9.0, 10.0));
        assert!((quantile(&[0.0, 10.0], 0.25) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn one_sample_and_none() {
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!(
            (one.min, one.p10, one.median, one.p90, one.max),
            (7.0, 7.0, 7.0, 7.0, 7.0)
        );
        assert!(Summary::of(&[]).is_none());
    }
}
