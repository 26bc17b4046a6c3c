//! Collecting rates over rounds and printing them as ratios of a baseline.

use std::collections::BTreeMap;

/// Rates (per second) per named measurement, over rounds.
#[derive(Debug, Default)]
pub(crate) struct Report {
    rates: BTreeMap<&'static str, Vec<f64>>,
    order: Vec<&'static str>,
}

impl Report {
    pub(crate) fn record(&mut self, name: &'static str, count: usize, seconds: f64) {
        if !self.rates.contains_key(name) {
            self.order.push(name);
        }
        self.rates
            .entry(name)
            .or_default()
            .push(count as f64 / seconds);
    }

    pub(crate) fn median(&self, name: &str) -> f64 {
        let mut values = self.rates.get(name).cloned().unwrap_or_default();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// Every round's rate of one measurement, in the order recorded.
    pub(crate) fn rounds(&self, name: &str) -> &[f64] {
        self.rates.get(name).map_or(&[], Vec::as_slice)
    }

    /// Prints each measurement's median rate and its ratio to `baseline_of(name)`.
    pub(crate) fn print(&self, title: &str, baseline_of: impl Fn(&str) -> &'static str) {
        println!("\n{title}");
        println!(
            "{:<44} {:>14} {:>10}  rounds",
            "measurement", "median/s", "vs raw"
        );
        for name in &self.order {
            let median = self.median(name);
            let baseline = baseline_of(name);
            let ratio = if baseline == *name {
                "baseline".to_owned()
            } else {
                format!("{:.2}x", median / self.median(baseline))
            };
            let rounds: Vec<String> = self.rates[name].iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "{name:<44} {median:>14.0} {ratio:>10}  {}",
                rounds.join(" ")
            );
        }
    }
}
