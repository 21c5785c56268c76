//! The quantization harness: suites, importers, the graph IR, executors, quantization, measurement, results
//! and search. The `harness` binary (`main.rs`) is a thin CLI over this library.

pub mod bench;
pub mod compare;
pub mod data;
pub mod error;
pub mod exec;
pub mod inspect;
pub mod ir;
pub mod models;
pub mod onnx;
pub mod quant;
pub mod report;
pub mod results;
pub mod runner;
pub mod search;
pub mod suite;
pub mod table;
pub mod text;
pub mod train;

pub use error::Error;
