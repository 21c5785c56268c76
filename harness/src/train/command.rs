//! `harness train`: trains a built-in architecture from scratch on an IDX data set (Fashion-MNIST layout) and
//! writes it as ONNX. Progress goes to stderr, one line per epoch; the summary to stdout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::{Normalize, load_idx};
use crate::error::Error;
use prost::Message;

use crate::onnx::export::export_model;
use crate::onnx::proto::StringStringEntryProto;

use super::fit::{Dataset, TrainConfig, top1, train};
use super::graph::TrainableGraph;
use super::optim::{LrSchedule, OptimizerConfig, OptimizerKind};

/// `x = (pixel / 255 - mean) / std` with Fashion-MNIST's training-set pixel mean and standard deviation.
pub const FASHION_NORMALIZE: Normalize = Normalize {
    scale: 1.0 / 255.0,
    mean: 0.2860,
    std: 0.3530,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerArg {
    Adam,
    Sgd,
}

/// Options of `harness train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// The architecture to train from scratch (fashion-cnn: 2 conv + 2 dense layers, 28x28 grey input).
    #[arg(long, default_value = "fashion-cnn")]
    pub arch: String,
    /// Folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
    /// t10k-labels-idx1-ubyte.gz (gzipped or not), as Debian's dataset-fashion-mnist installs them.
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    pub data: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Seeds the initial weights and the batch order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// Peak learning rate (cosine decay to 1 % of it over the run).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight decay of the weights (decoupled for Adam, L2 for SGD).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Train on the first N training samples only (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Where to write the trained model (.onnx).
    #[arg(long)]
    pub out: PathBuf,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The IDX file `stem` (gzipped or not) in `dir`, or a usage error naming what is missing.
fn idx_file(dir: &Path, stem: &str) -> Result<PathBuf, Error> {
    let gz = dir.join(format!("{stem}.gz"));
    let plain = dir.join(stem);
    [&gz, &plain]
        .into_iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::Usage(format!(
                "{}: no such file (nor {}); --data must hold the Fashion-MNIST IDX files \
                 train-{{images-idx3,labels-idx1}}-ubyte[.gz] and t10k-{{images-idx3,labels-idx1}}-ubyte[.gz] \
                 (Debian/Ubuntu: apt-get install dataset-fashion-mnist)",
                gz.display(),
                plain.display()
            ))
        })
}

fn load_split(dir: &Path, prefix: &str) -> Result<Dataset, Error> {
    let images = idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels = idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let raw = load_idx(&images, &labels).map_err(|source| Error::Data {
        dataset: format!("{} ({prefix})", dir.display()),
        source,
    })?;
    Dataset::from_raw(&raw, &[1, 28, 28], &FASHION_NORMALIZE)
        .map_err(|e| Error::Usage(e.to_string()))
}

/// Runs `harness train`.
pub fn run(args: &TrainArgs) -> Result<(), Error> {
    let usage = |e: super::TrainError| Error::Usage(e.to_string());
    let graph = super::arch::build(&args.arch, args.seed).map_err(usage)?;
    if args.epochs == 0 || args.batch_size == 0 {
        return Err(Error::Usage(
            "--epochs and --batch-size must be at least 1".into(),
        ));
    }
    let mut train_set = load_split(&args.data, "train")?;
    let test_set = load_split(&args.data, "t10k")?;
    if let Some(n) = args.limit {
        let keep: Vec<usize> = (0..n.min(train_set.len())).collect();
        train_set = train_set.subset(&keep);
    }
    let kernels = kernels::select(None).map_err(|e| Error::Usage(e.to_string()))?;
    let mut model = TrainableGraph::<f32>::new(&graph, &kernels).map_err(usage)?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer: OptimizerConfig {
            kind: match args.optimizer {
                OptimizerArg::Adam => OptimizerKind::adam(),
                OptimizerArg::Sgd => OptimizerKind::sgd(),
            },
            lr: args.lr,
            weight_decay: args.weight_decay,
            schedule: LrSchedule::Cosine {
                final_fraction: 0.01,
            },
            step_lr_scale: 1.0,
        },
        seed: args.seed,
    };
    let settings = format!(
        "arch={} epochs={} seed={} batch_size={} optimizer={} lr={} schedule=cosine(0.01) weight_decay={} \
         train_samples={} gemm_f32={}",
        args.arch,
        args.epochs,
        args.seed,
        args.batch_size,
        config.optimizer.kind.name(),
        args.lr,
        args.weight_decay,
        train_set.len(),
        kernels.gemm_f32.name()
    );
    if !args.quiet {
        eprintln!(
            "training {} ({} parameters) on {} samples, evaluating on {} held-out samples after each epoch; {settings}",
            args.arch,
            graph.parameter_count(),
            train_set.len(),
            test_set.len()
        );
    }
    let start = Instant::now();
    let quiet = args.quiet;
    train(&mut model, &train_set, Some(&test_set), &config, &mut |r| {
        if !quiet {
            eprintln!("{r}");
        }
    })
    .map_err(|e| Error::Run(e.to_string()))?;
    let seconds = start.elapsed().as_secs_f64();
    let test_top1 = top1(&model, &test_set, 256).map_err(|e| Error::Run(e.to_string()))?;

    let trained = model.to_graph();
    let mut proto = export_model(&trained).map_err(|e| Error::Run(e.to_string()))?;
    let meta = |key: &str, value: String| StringStringEntryProto {
        key: key.to_owned(),
        value,
    };
    proto.doc_string = format!(
        "{} trained from scratch by `harness train` ({} {}). Input: (pixel / 255 - {:.4}) / {:.4}.",
        args.arch,
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        FASHION_NORMALIZE.mean,
        FASHION_NORMALIZE.std
    );
    proto.metadata_props = vec![
        meta("training", settings),
        meta(
            "normalize",
            format!(
                "scale=1/255 mean={:.4} std={:.4}",
                FASHION_NORMALIZE.mean, FASHION_NORMALIZE.std
            ),
        ),
        meta("test_top1", format!("{test_top1:.4}")),
    ];
    let bytes = proto.encode_to_vec();
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Run(format!("{}: cannot create folder: {e}", parent.display())))?;
    }
    std::fs::write(&args.out, &bytes)
        .map_err(|e| Error::Run(format!("{}: cannot write model: {e}", args.out.display())))?;
    println!(
        "test top-1 {:.2} % ({} samples), {} epochs in {seconds:.1} s, wrote {} ({} bytes)",
        100.0 * test_top1,
        test_set.len(),
        args.epochs,
        args.out.display(),
        bytes.len()
    );
    Ok(())
}
