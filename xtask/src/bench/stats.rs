//! Summaries of repeated measurements: min / median / p90 / max (nearest rank, no interpolation:
//! every figure reported is one that was measured).
use super::results::{Run, ScenarioRuns};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

/// Nearest-rank percentile of sorted values (NaN when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summary(values: impl IntoIterator<Item = f64>) -> Summary {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    Summary {
        n: v.len(),
        min: percentile(&v, 0.0),
        median: percentile(&v, 0.5),
        p90: percentile(&v, 0.9),
        max: percentile(&v, 1.0),
    }
}

/// Outage and lost-probe summaries of one scenario's runs, and how many lost nothing.
pub struct ScenarioSummary {
    pub outage: Summary,
    pub lost: Summary,
    pub no_loss: usize,
    pub runs: usize,
    /// The outage a 1 ms prober saw, where every run has it (results since the probes were
    /// made finer).
    pub outage_1ms: Option<Summary>,
}

pub fn scenario(s: &ScenarioRuns) -> ScenarioSummary {
    let coarse: Option<Vec<f64>> = s.runs.iter().map(|r: &Run| r.outage_1ms).collect();
    ScenarioSummary {
        outage: summary(s.runs.iter().map(|r: &Run| r.outage_ms)),
        lost: summary(s.runs.iter().map(|r| r.lost as f64)),
        no_loss: s.runs.iter().filter(|r| r.lost == 0).count(),
        runs: s.runs.len(),
        outage_1ms: coarse.filter(|v| !v.is_empty()).map(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = summary(v.iter().rev().copied());
        assert_eq!((s.min, s.median, s.p90, s.max), (1.0, 5.0, 9.0, 10.0));
        assert_eq!(summary([3.0]).median, 3.0);
        assert!(summary([]).median.is_nan());
    }
}
