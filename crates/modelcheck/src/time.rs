//! Model time: whole hours in a byte, the unit the case study's model ticks in.

use std::ops::Add;

use profilestore_core::time::Time;

/// An instant of model time: hours since the start of the exploration.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Hour(pub u8);

/// A length of model time in hours.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Hours(pub u8);

impl Add for Hours {
    type Output = Hours;

    // Saturating, as `Time::plus` promises: a huge "no deadline" timeout must not wrap
    // around into a tiny one.
    fn add(self, rhs: Hours) -> Hours {
        Hours(self.0.saturating_add(rhs.0))
    }
}

impl Time for Hour {
    type Span = Hours;

    fn plus(self, span: Hours) -> Hour {
        Hour(self.0.saturating_add(span.0))
    }
}

impl std::fmt::Display for Hour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}h", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_saturate_so_a_huge_timeout_stays_huge() {
        assert_eq!(Hour(250).plus(Hours(10)), Hour(255));
        assert_eq!(Hours(200) + Hours(100), Hours(255));
        assert_eq!(Hour(1).plus(Hours(0)), Hour(1));
    }
}
