//! What every benchmark reads and prints: its settings from the environment, and
//! percentiles of what it measured.

/// A setting from the environment (`ROUNDS=20 bench/…`), else `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `q` quantile (0.5, 0.99) of sorted figures, nearest rank.
#[allow(dead_code)] // not every benchmark prints percentiles
pub fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}
