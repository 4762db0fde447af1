//! Contract diagnostics for a terminal.

use contracts::Report;

/// Every error of `report`, then every warning, rendered for `source` shown as `file`.
pub fn render(report: &Report, file: &str, source: &str) -> String {
    let errors = report.errors.iter().map(|e| e.render(file, source));
    let warnings = report
        .warnings
        .iter()
        .map(|w| w.render_as("warning", file, source));
    errors.chain(warnings).collect()
}
