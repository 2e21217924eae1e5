//! Small statistics shared by the report binaries: the median of a set of rounds.

/// The median of `v` (sorted in place): the middle value of an odd count, the mean of the
/// two middle values of an even count, NaN for an empty slice. NaNs sort last, whatever
/// their sign: `f64::total_cmp` alone puts a NaN with the sign bit set (what `0.0 / 0.0`
/// and `inf / inf` give on x86-64) first, which moved the median down a place.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.is_nan().cmp(&b.is_nan()).then(a.total_cmp(b)));
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

    /// A NaN (say, a ratio of two rates that were both infinite) sorts last whatever its
    /// sign, so it moves the median up a place at most, never down.
    #[test]
    fn nans_sort_last_whatever_their_sign() {
        let negative_nan = -f64::NAN;
        assert!(negative_nan.is_nan() && negative_nan.is_sign_negative());
        for nan in [f64::NAN, negative_nan] {
            let mut v = [1.0, 2.0, nan, 3.0, 5.0];
            assert!((median(&mut v) - 3.0).abs() < 1e-12, "{v:?}");
            assert!(v[4].is_nan(), "{v:?}");
        }
    }
}
