//! [`Normalize`]: the affine input normalisation a suite declares, `x' = (x * scale - mean) / std`.

use ndarray::Array2;

use super::DataError;

fn one() -> f32 {
    1.0
}

/// Normalisation as the suite declares it: `x' = (x * scale - mean) / std`, applied in place.
/// Omitted fields default to the identity (`scale = 1`, `mean = 0`, `std = 1`). For MNIST pixels
/// stored as 0..=255 the usual setting is `scale = 1/255, mean = 0.1307, std = 0.3081`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub mean: f32,
    #[serde(default = "one")]
    pub std: f32,
}

impl Default for Normalize {
    /// The identity normalisation.
    fn default() -> Self {
        Normalize {
            scale: 1.0,
            mean: 0.0,
            std: 1.0,
        }
    }
}

impl Normalize {
    /// Applies `x' = (x * scale - mean) / std` to every element, in place.
    pub fn apply(&self, features: &mut Array2<f32>) {
        let Normalize { scale, mean, std } = *self;
        features.mapv_inplace(|x| (x * scale - mean) / std);
    }

    /// Checks that the parameters are finite and `std` is non-zero, so `apply` yields finite
    /// values for finite inputs. Call it once when a suite is loaded.
    pub fn validate(&self) -> Result<(), DataError> {
        if !(self.scale.is_finite() && self.mean.is_finite() && self.std.is_finite()) {
            return Err(DataError::InvalidNormalize {
                message: format!(
                    "scale {}, mean {} and std {} must all be finite",
                    self.scale, self.mean, self.std
                ),
            });
        }
        if self.std == 0.0 {
            return Err(DataError::InvalidNormalize {
                message: "std must be non-zero".to_string(),
            });
        }
        Ok(())
    }
}
