//! [`CalibrationMethod`]: the calibration choices a strategy names, their tokens, and the calibrator factory.
//!
//! Tokens (suite files, CLI): `minmax`, `ema`, `ema:<momentum>`, `percentile:<P>`, `kl`, `mse`.
//! Names ([`CalibrationMethod::name`], used in CSV rows and strategy names): `minmax`, `ema<momentum>`,
//! `p<P>`, `kl`, `mse`, e.g. `ema0.01`, `p99.99`. Names carry no `:` or `,`, and parse back to the same method
//! (numbers print as the shortest decimal that reads back to the same `f64`).

use std::fmt;
use std::str::FromStr;

use super::{
    CalibError, Calibrator, HistogramCalibrator, MinMaxCalibrator, MovingAverageCalibrator,
};

/// Default momentum of `ema` (PyTorch's `averaging_constant`).
pub const DEFAULT_MOMENTUM: f64 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CalibrationMethod {
    /// Exact running min / max.
    MinMax,
    /// Per-batch min / max averaged: `m += momentum·(batch − m)`, momentum in `(0, 1]`.
    MovingAverage { momentum: f64 },
    /// Covers this percentage (in `(0, 100]`) of the observed mass.
    Percentile(f64),
    /// Minimizes `KL(P || Q)` (TensorRT's entropy calibration).
    Kl,
    /// Minimizes the expected squared quantization error.
    Mse,
}

impl CalibrationMethod {
    /// Parses a token (or a name, see the module docs).
    pub fn parse(s: &str) -> Result<Self, CalibError> {
        let bad = |reason: String| CalibError::BadMethod {
            token: s.to_string(),
            reason,
        };
        let number = |text: &str, what: &str| {
            text.parse::<f64>()
                .map_err(|_| bad(format!("`{text}` is not a number ({what})")))
        };
        let method = match s {
            "minmax" => CalibrationMethod::MinMax,
            "ema" => CalibrationMethod::MovingAverage {
                momentum: DEFAULT_MOMENTUM,
            },
            "kl" => CalibrationMethod::Kl,
            "mse" => CalibrationMethod::Mse,
            _ => {
                if let Some(rest) = s.strip_prefix("ema") {
                    let rest = rest.strip_prefix(':').unwrap_or(rest);
                    CalibrationMethod::MovingAverage {
                        momentum: number(rest, "the momentum")?,
                    }
                } else if let Some(rest) = s
                    .strip_prefix("percentile:")
                    .or_else(|| s.strip_prefix('p'))
                {
                    CalibrationMethod::Percentile(number(rest, "the percentile")?)
                } else {
                    return Err(bad("unknown method".to_string()));
                }
            }
        };
        method.validate().map_err(|e| match e {
            CalibError::BadMethod { reason, .. } => bad(reason),
            other => other,
        })?;
        Ok(method)
    }

    /// The short, stable name (see the module docs); `parse(name())` gives the method back.
    pub fn name(&self) -> String {
        match self {
            CalibrationMethod::MinMax => "minmax".to_string(),
            CalibrationMethod::MovingAverage { momentum } => format!("ema{momentum}"),
            CalibrationMethod::Percentile(p) => format!("p{p}"),
            CalibrationMethod::Kl => "kl".to_string(),
            CalibrationMethod::Mse => "mse".to_string(),
        }
    }

    /// `Ok` when the method's parameter is in range.
    pub fn validate(&self) -> Result<(), CalibError> {
        let reason = match *self {
            CalibrationMethod::MovingAverage { momentum }
                if !(momentum > 0.0 && momentum <= 1.0) =>
            {
                "the momentum must be in (0, 1]"
            }
            CalibrationMethod::Percentile(p) if !(p > 0.0 && p <= 100.0) => {
                "the percentile must be in (0, 100]"
            }
            _ => return Ok(()),
        };
        Err(CalibError::BadMethod {
            token: self.name(),
            reason: reason.to_string(),
        })
    }

    /// Whether the method keeps a histogram (percentile, KL, MSE).
    pub fn uses_histogram(&self) -> bool {
        matches!(
            self,
            CalibrationMethod::Percentile(_) | CalibrationMethod::Kl | CalibrationMethod::Mse
        )
    }

    /// A fresh calibrator for `bits`-bit values, symmetric (zero-centred) or affine. An out-of-range `bits` or
    /// parameter is reported by the calibrator's `observe` and `range`.
    pub fn calibrator(&self, bits: u32, symmetric: bool) -> Box<dyn Calibrator + Send> {
        match *self {
            CalibrationMethod::MinMax => Box::new(MinMaxCalibrator::new(bits, symmetric)),
            CalibrationMethod::MovingAverage { momentum } => {
                Box::new(MovingAverageCalibrator::new(momentum, bits, symmetric))
            }
            _ => Box::new(
                HistogramCalibrator::new(*self, bits, symmetric)
                    .expect("histogram methods are accepted"),
            ),
        }
    }
}

impl fmt::Display for CalibrationMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for CalibrationMethod {
    type Err = CalibError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_names_round_trip() {
        let cases = [
            ("minmax", CalibrationMethod::MinMax, "minmax"),
            (
                "ema",
                CalibrationMethod::MovingAverage { momentum: 0.01 },
                "ema0.01",
            ),
            (
                "ema:0.1",
                CalibrationMethod::MovingAverage { momentum: 0.1 },
                "ema0.1",
            ),
            (
                "percentile:99.99",
                CalibrationMethod::Percentile(99.99),
                "p99.99",
            ),
            (
                "percentile:100",
                CalibrationMethod::Percentile(100.0),
                "p100",
            ),
            ("kl", CalibrationMethod::Kl, "kl"),
            ("mse", CalibrationMethod::Mse, "mse"),
        ];
        for (token, method, name) in cases {
            assert_eq!(CalibrationMethod::parse(token), Ok(method), "{token}");
            assert_eq!(method.name(), name);
            assert_eq!(CalibrationMethod::parse(name), Ok(method), "{name}");
            assert_eq!(name.parse::<CalibrationMethod>(), Ok(method));
            assert_eq!(method.to_string(), name);
            assert_eq!(method.calibrator(8, false).method(), method);
        }
    }

    #[test]
    fn bad_tokens_name_the_token_and_list_the_accepted_forms() {
        for (token, why) in [
            ("foo", "unknown method"),
            ("", "unknown method"),
            ("KL", "unknown method"),
            ("percentile:abc", "`abc` is not a number"),
            ("percentile:", "`` is not a number"),
            ("percentile:150", "(0, 100]"),
            ("percentile:0", "(0, 100]"),
            ("percentile:NaN", "(0, 100]"),
            ("ema:0", "(0, 1]"),
            ("ema:1.5", "(0, 1]"),
            ("ema:x", "`x` is not a number"),
            ("kl:3", "unknown method"),
        ] {
            let err = CalibrationMethod::parse(token).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, CalibError::BadMethod { .. }),
                "{token}: {err:?}"
            );
            assert!(text.contains(&format!("`{token}`")), "{text}");
            assert!(text.contains(why), "{token}: {text}");
            assert!(
                text.contains("minmax, ema, ema:<momentum") && text.contains("kl, mse"),
                "{text}"
            );
        }
    }
}
