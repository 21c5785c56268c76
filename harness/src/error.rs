//! The library's top-level error: every failure a command can report, and the exit code it maps to.
//! Errors caused by the user's inputs (suite, data, model files, ISA choices) exit with 2; failures while
//! running exit with 1.

use crate::data::DataError;
use crate::onnx::ImportError;
use crate::quant::QuantError;
use crate::results::ResultsError;
use crate::suite::SuiteError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Suite(#[from] SuiteError),
    #[error("dataset `{dataset}`: {source}")]
    Data { dataset: String, source: DataError },
    #[error("model `{model}`: {source}")]
    Import {
        model: String,
        source: Box<ImportError>,
    },
    /// A model that imports but cannot run on its dataset.
    #[error("model `{model}`: {message}")]
    Model { model: String, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("model `{model}`, strategy `{strategy}`: {source}")]
    Quant {
        model: String,
        strategy: String,
        source: Box<QuantError>,
    },
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("report: {0}")]
    Report(#[from] crate::report::ReportError),
    #[error("{0}")]
    Run(String),
}

impl Error {
    /// 2 for bad input, 1 for a failure while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Suite(_)
            | Error::Data { .. }
            | Error::Import { .. }
            | Error::Model { .. }
            | Error::Usage(_) => 2,
            Error::Report(crate::report::ReportError::Input { .. }) => 2,
            Error::Quant { .. } | Error::Results(_) | Error::Report(_) | Error::Run(_) => 1,
        }
    }
}
