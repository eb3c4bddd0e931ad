//! Accuracy section (filled in once `waveform` lands).

/// Accuracy figures.
#[derive(Debug, serde::Serialize)]
pub struct AccuracyReport {}

/// Runs the accuracy grid.
pub fn run() -> AccuracyReport {
    AccuracyReport {}
}

/// Prints the accuracy table.
pub fn print(_: &AccuracyReport) {}
