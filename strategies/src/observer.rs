//! Streaming activation observers: they see calibration batches one at a time, in bounded memory, and
//! report the range a scheme turns into quantization parameters.

/// Running minimum and maximum over every finite value seen (min-max calibration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinMaxObserver {
    min: f32,
    max: f32,
    count: u64,
}

impl Default for MinMaxObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl MinMaxObserver {
    pub fn new() -> Self {
        MinMaxObserver {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
        }
    }

    /// Folds one batch of values in. Non-finite values are ignored: one NaN must not poison a layer's range.
    pub fn update(&mut self, values: &[f32]) {
        let (mut lo, mut hi) = (self.min, self.max);
        let mut seen = 0u64;
        for &v in values {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
                seen += 1;
            }
        }
        self.min = lo;
        self.max = hi;
        self.count += seen;
    }

    /// Combines two observers of disjoint data (as from parallel calibration workers).
    pub fn merge(&mut self, other: &MinMaxObserver) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
    }

    /// Number of finite values observed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `(min, max)`, or `None` before any finite value was seen.
    pub fn range(&self) -> Option<(f32, f32)> {
        (self.count > 0).then_some((self.min, self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_one_shot_and_ignores_non_finite() {
        let data: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.25)
            .collect();
        let mut one = MinMaxObserver::new();
        one.update(&data);
        let mut streamed = MinMaxObserver::new();
        for chunk in data.chunks(33) {
            streamed.update(chunk);
        }
        streamed.update(&[f32::NAN, f32::INFINITY]);
        assert_eq!(one.range(), streamed.range());
        assert_eq!(one.range(), Some((-12.5, 12.5)));
        let (a, b) = data.split_at(400);
        let (mut left, mut right) = (MinMaxObserver::new(), MinMaxObserver::new());
        left.update(a);
        right.update(b);
        left.merge(&right);
        assert_eq!(left.range(), one.range());
        assert_eq!(left.count(), 1000);
    }

    #[test]
    fn empty_observer_has_no_range() {
        assert_eq!(MinMaxObserver::new().range(), None);
    }
}
