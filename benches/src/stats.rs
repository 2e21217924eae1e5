//! Small statistics shared by the report binaries: the median of a set of rounds.

/// The median of `v` (sorted in place): the middle value of an odd count, the mean of the
/// two middle values of an even count, NaN for an empty slice. NaNs sort last.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match (v.get(n.saturating_sub(1) / 2), v.get(n / 2)) {
        (Some(a), Some(b)) => f64::midpoint(*a, *b),
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_unsorted_sets() {
        assert!((median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        // Even count: the mean of the middle two, not the upper one (which made an even
        // number of rounds report the faster of the two middle rounds).
        assert!((median(&mut [4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < 1e-12);
        assert!((median(&mut [10.0, 20.0]) - 15.0).abs() < 1e-12);
        assert!((median(&mut [7.0]) - 7.0).abs() < 1e-12);
        assert!(median(&mut []).is_nan());
    }
}
