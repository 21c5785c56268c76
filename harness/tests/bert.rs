//! The BERT encoder path: WordPiece tokenization against HF `tokenizers`, the safetensors import into the
//! graph IR, pooling, the text dataset format and the embedding metrics. Fixtures are in
//! `suites/data/minilm_ref/` (made by `scripts/bert_reference.py`). Tests that need the 91 MB model
//! (all-MiniLM-L6-v2, fetched by `scripts/fetch_minilm.sh` into `$HARNESS_MINILM_DIR` or
//! `~/.cache/harness/minilm`) skip, saying so, when it is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use harness::data::{read_npy_f32, read_npy_i64};
use harness::exec::Fp32Executor;
use harness::ir::{Op, Tensor};
use harness::models::bert::{
    self, BertConfig, SENTENCE_EMBEDDING, TOKEN_EMBEDDINGS, build_bert_graph, mean_pool_normalize,
};
use harness::text::{
    TextError, TokenBatch, Tokenizer, TokenizerOptions, embedding_metrics, load_text_lines,
};
use ndarray::{Array2, Array3, ArrayD, IxDyn};

/// Issue 5's bound on FP32 parity with the reference implementation.
const PARITY_ATOL: f32 = 1e-4;
/// Padding must not change a sentence's embedding beyond float reassociation in the GEMM (values ~0.1,
/// K <= 64 here).
const PADDING_ATOL: f32 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../suites/data/minilm_ref")
        .join(name)
}

fn minilm() -> Option<PathBuf> {
    let dir = bert::find_minilm_dir();
    if dir.is_none() {
        eprintln!(
            "SKIPPED: all-MiniLM-L6-v2 not found (set HARNESS_MINILM_DIR or run scripts/fetch_minilm.sh)"
        );
    }
    dir
}

/// `(text, ids)` from `tokenizer_cases.jsonl`.
fn tokenizer_cases() -> Vec<(String, Vec<i64>)> {
    let text = std::fs::read_to_string(fixture("tokenizer_cases.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ids = v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_i64().unwrap())
                .collect();
            (v["text"].as_str().unwrap().to_owned(), ids)
        })
        .collect()
}

fn assert_tokenizer_agrees(tok: &Tokenizer) {
    let cases = tokenizer_cases();
    assert!(cases.len() > 80, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let got = tok.encode(text);
        if &got != expected {
            failures.push(format!(
                "{text:?}\n  ours:   {got:?}\n  theirs: {expected:?}"
            ));
        }
    }
    eprintln!(
        "tokenizer ({}): {}/{} sequences identical to HF tokenizers",
        tok.source().display(),
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tokenizer_from_vocab_txt_matches_hf_tokenizers() {
    let tok = Tokenizer::from_vocab_txt(&fixture("vocab.txt.gz"), TokenizerOptions::bert_uncased())
        .unwrap();
    assert_eq!(tok.vocab_size(), 30522);
    assert_tokenizer_agrees(&tok);
}

#[test]
fn tokenizer_from_tokenizer_json_matches_hf_tokenizers() {
    let Some(dir) = minilm() else { return };
    let tok = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json")).unwrap();
    assert_eq!(tok.options().max_length, 128);
    assert_tokenizer_agrees(&tok);
}

#[test]
fn unsupported_tokenizer_json_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(
        &path,
        r#"{"model": {"type": "BPE", "unk_token": "<unk>", "vocab": {}}}"#,
    )
    .unwrap();
    let e = Tokenizer::from_tokenizer_json(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenizer.json") && e.contains("BPE"), "{e}");
}

#[test]
fn text_dataset_loads_lines_and_batches() {
    let data = load_text_lines(&fixture("sentences.txt")).unwrap();
    assert_eq!(data.len(), 82);
    let tok = Tokenizer::from_vocab_txt(&fixture("vocab.txt.gz"), TokenizerOptions::bert_uncased())
        .unwrap();
    let batches = data.batches(&tok, 32);
    assert_eq!(
        batches.iter().map(TokenBatch::len).collect::<Vec<_>>(),
        vec![32, 32, 18]
    );
    for b in &batches {
        // Every row starts with [CLS]; its mask counts its real tokens; padding is [PAD].
        for r in 0..b.len() {
            let n = b.attention_mask.row(r).sum() as usize;
            assert_eq!(b.input_ids[[r, 0]], 101);
            assert_eq!(b.input_ids[[r, n - 1]], 102);
            assert!(b.input_ids.row(r).iter().skip(n).all(|&id| id == 0));
        }
        assert!(b.seq_len() <= 128);
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"fine line\n\n  second line  \n\xff\xfe broken\n").unwrap();
    let e = load_text_lines(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.txt") && e.contains("line 4"), "{e}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n \n").unwrap();
    assert!(matches!(
        load_text_lines(&empty),
        Err(TextError::Empty { .. })
    ));
    let ok = dir.path().join("ok.txt");
    std::fs::write(&ok, "fine line\r\n\n  second line  \n").unwrap();
    assert_eq!(
        load_text_lines(&ok).unwrap().sentences,
        vec!["fine line", "second line"]
    );
}

/// A deterministic pseudo-random stream in [-scale, scale].
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, scale: f32) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    fn array(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|_| self.next(scale)).collect())
                .unwrap(),
        )
    }
}

fn tiny_config() -> BertConfig {
    serde_json::from_str(
        r#"{"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": 12, "type_vocab_size": 2,
            "vocab_size": 20, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "model_type": "bert"}"#,
    )
    .unwrap()
}

fn tiny_weights(c: &BertConfig, prefix: &str) -> BTreeMap<String, Tensor> {
    let mut rng = Lcg(7);
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut w = BTreeMap::new();
    let mut put = |name: String, shape: &[usize], rng: &mut Lcg| {
        w.insert(format!("{prefix}{name}"), rng.array(shape, 0.5));
    };
    put(
        "embeddings.word_embeddings.weight".into(),
        &[c.vocab_size, h],
        &mut rng,
    );
    put(
        "embeddings.position_embeddings.weight".into(),
        &[c.max_position_embeddings, h],
        &mut rng,
    );
    put(
        "embeddings.token_type_embeddings.weight".into(),
        &[c.type_vocab_size, h],
        &mut rng,
    );
    put("embeddings.LayerNorm.weight".into(), &[h], &mut rng);
    put("embeddings.LayerNorm.bias".into(), &[h], &mut rng);
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (m, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            put(format!("{p}.{m}.weight"), &[out, inp], &mut rng);
            put(format!("{p}.{m}.bias"), &[out], &mut rng);
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(format!("{p}.{ln}.weight"), &[h], &mut rng);
            put(format!("{p}.{ln}.bias"), &[h], &mut rng);
        }
    }
    w
}

fn run(exec: &Fp32Executor, batch: &TokenBatch) -> (Array3<f32>, Array2<f32>) {
    let out = exec.run_tensors(&batch.to_inputs()).unwrap();
    let get = |name: &str| {
        out.iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .as_f32()
            .unwrap()
            .clone()
    };
    (
        get(TOKEN_EMBEDDINGS).into_dimensionality().unwrap(),
        get(SENTENCE_EMBEDDING).into_dimensionality().unwrap(),
    )
}

#[test]
fn tiny_bert_graph_pools_masks_and_exposes_matmul_layers() {
    let c = tiny_config();
    let graph = build_bert_graph(&c, &tiny_weights(&c, "bert."), "tiny").unwrap();
    // Six linear layers per encoder layer, each a MatMul with a constant [in, out] weight.
    let linear: Vec<&str> = graph
        .nodes
        .iter()
        .filter(|n| n.op == Op::MatMul && graph.initializers.contains_key(&n.inputs[1]))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(linear.len(), 6 * c.num_hidden_layers);
    assert_eq!(linear[0], "encoder.layer.0.attention.self.query");
    assert_eq!(
        graph.initializers["encoder.layer.0.intermediate.dense.weight_t"].shape(),
        &[8, 16]
    );

    let exec = Fp32Executor::new(&graph, kernels::select(None).unwrap()).unwrap();
    let long = vec![2, 5, 9, 11, 3, 7, 1];
    let short = vec![2, 4, 6, 1];
    let batch = harness::text::tokenizer::pad_batch(&[long.clone(), short.clone()], 0);
    let (tokens, sentences) = run(&exec, &batch);
    assert_eq!(tokens.shape(), &[2, 7, 8]);
    assert_eq!(sentences.shape(), &[2, 8]);
    // The graph's pooling equals the post-processing function, and rows are unit vectors.
    let pooled = mean_pool_normalize(tokens.view(), batch.attention_mask.view());
    for (a, b) in sentences.iter().zip(&pooled) {
        assert!((a - b).abs() <= PADDING_ATOL, "{a} vs {b}");
    }
    for row in sentences.rows() {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() <= PADDING_ATOL, "norm {norm}");
    }
    // Padding changes nothing: the short sentence alone gives the same token and sentence embeddings.
    let alone = harness::text::tokenizer::pad_batch(std::slice::from_ref(&short), 0);
    let (t_alone, s_alone) = run(&exec, &alone);
    for (a, b) in s_alone.row(0).iter().zip(sentences.row(1)) {
        assert!((a - b).abs() <= PADDING_ATOL, "{a} vs {b}");
    }
    let padded_rows = tokens.slice(ndarray::s![1, ..short.len(), ..]);
    for (a, b) in t_alone.iter().zip(padded_rows.iter()) {
        assert!((a - b).abs() <= PADDING_ATOL, "{a} vs {b}");
    }
}

#[test]
fn missing_or_misshapen_weights_and_bad_configs_are_errors() {
    let c = tiny_config();
    let mut w = tiny_weights(&c, "");
    w.remove("encoder.layer.1.output.dense.bias");
    let e = build_bert_graph(&c, &w, "t").unwrap_err().to_string();
    assert!(e.contains("encoder.layer.1.output.dense.bias"), "{e}");

    let mut w = tiny_weights(&c, "");
    w.insert(
        "encoder.layer.0.attention.self.key.weight".into(),
        Tensor::F32(ArrayD::zeros(IxDyn(&[8, 9]))),
    );
    let e = build_bert_graph(&c, &w, "t").unwrap_err().to_string();
    assert!(
        e.contains("attention.self.key.weight") && e.contains("[8, 8]"),
        "{e}"
    );

    let mut relu = tiny_config();
    relu.hidden_act = "relu".into();
    let e = build_bert_graph(&relu, &tiny_weights(&c, ""), "t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("relu"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": 8}").unwrap();
    let e = bert::load_bert(dir.path()).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
}

fn npy_i64(name: &str) -> Array2<i64> {
    let (shape, v) = read_npy_i64(&fixture(name)).unwrap();
    Array2::from_shape_vec((shape[0], shape[1]), v).unwrap()
}

#[test]
fn minilm_fp32_matches_the_numpy_reference() {
    let Some(dir) = minilm() else { return };
    let t0 = Instant::now();
    let model = bert::load_bert(&dir).unwrap();
    let load_s = t0.elapsed().as_secs_f64();
    // The checkpoint's 22,713,216 parameters less the unused pooler (384 x 384 + 384) and token-type row 1,
    // plus five scalar constants.
    assert_eq!(
        model.graph.parameter_count(),
        22_713_216 - (384 * 384 + 384) - 384 + 5
    );
    let exec = Fp32Executor::new(&model.graph, kernels::select(None).unwrap()).unwrap();

    let batch = TokenBatch {
        input_ids: npy_i64("input_ids.npy"),
        attention_mask: npy_i64("attention_mask.npy"),
    };
    // Our tokenizer gives the fixture's ids for the fixture's sentences.
    let tok = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json")).unwrap();
    let sentences = load_text_lines(&fixture("embed_sentences.txt")).unwrap();
    assert_eq!(tok.batch(&sentences.sentences), batch);

    let (shape, reference) = read_npy_f32(&fixture("sentence_embeddings_f32.npy")).unwrap();
    let reference = Array2::from_shape_vec((shape[0], shape[1]), reference).unwrap();
    let ours = bert::embed(&exec, &batch).unwrap();
    let max_diff = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let m = embedding_metrics(reference.view(), ours.view()).unwrap();

    let runs = 5;
    let t = Instant::now();
    for _ in 0..runs {
        bert::embed(&exec, &batch).unwrap();
    }
    let per_batch_ms = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
    eprintln!(
        "all-MiniLM-L6-v2 FP32 vs NumPy reference: max |diff| {max_diff:.3e} over {:?}, mean cosine {:.9}, \
         neighbour agreement {:?}; import {load_s:.2} s; {per_batch_ms:.1} ms per batch of {} x {} tokens \
         ({} kernel)",
        ours.shape(),
        m.mean_cosine,
        m.neighbour_agreement,
        batch.len(),
        batch.seq_len(),
        exec.kernel_names().join(", ")
    );
    assert!(max_diff <= PARITY_ATOL, "max |diff| {max_diff:e}");
    assert_eq!(m.neighbour_agreement, Some(1.0));
}
