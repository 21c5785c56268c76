#!/usr/bin/env python3
"""Builds suites/data/minilm_ref/: real English sentences, the token ids HF `tokenizers` gives them, and the
sentence embeddings of a plain NumPy forward pass of all-MiniLM-L6-v2 read from the same safetensors file the
harness imports. The Rust tests (harness/tests/bert.rs) compare against these.

Needs: numpy, safetensors, tokenizers (pip install safetensors tokenizers); the model folder from
scripts/fetch_minilm.sh. The harness itself never runs Python.

    python3 scripts/bert_reference.py --model ~/.cache/harness/minilm \
        [--sklearn-descr DIR] [--out suites/data/minilm_ref]

--sklearn-descr: the `sklearn/datasets/descr/` folder of a scikit-learn wheel
(`pip download --no-deps scikit-learn==1.9.1`, unzip); when given, sentences.txt is rebuilt from its .rst files,
otherwise the existing sentences.txt is used.

The forward pass mirrors HF BertModel + sentence-transformers in float32: embeddings (word + position +
token type 0) -> LayerNorm; per layer: Q/K/V linear, scores / sqrt(d) + (1 - mask) * finfo(f32).min, softmax,
context, output dense + residual + LayerNorm, intermediate dense + exact GELU, output dense + residual +
LayerNorm; then the masked mean over tokens (count clamped to 1e-9) and L2 normalisation (norm clamped to 1e-12).
"""
import argparse
import glob
import json
import math
import os
import re

import numpy as np

# Strings that exercise the tokenizer's corners (not a dataset; only the tokenizer fixture uses them).
EDGE_CASES = [
    "Café naïve résumé: Ångström, façade, jalapeño — “quoted” ‘text’…",
    "HELLO,world!! It's 3.14159 (approx.) & 50% <tags> [brackets] {braces} a/b\\c",
    "Unaffable tokenization of antidisestablishmentarianism and pneumonoultramicroscopicsilicovolcanoconiosis",
    "東京は日本の首都です。 中文字符 and 한국어 text",
    "Tabs\tnew\nlines\r\nand   multiple    spaces\u00a0(nbsp)\u2003(em space)",
    "Zero\u200bwidth\u200djoiner, soft\u00adhyphen, control\u0007bell and \ufffd replacement",
    "Greek αβγ Δ, Cyrillic Привет, Arabic مرحبا, Hindi हिन्दी, emoji 😀👍",
    "A [MASK] token, a [SEP] inside, and [CLS] too",
    "x" * 120,
    " ".join(["word"] * 200),
    "",
]


ABBREVIATIONS = {"al.", "etc.", "e.g.", "i.e.", "approx.", "vol.", "no.", "pp.", "fig.", "dr.", "mr.", "ms.", "vs."}


def split_sentences(paragraph):
    """Splits after . ! ? followed by a space and a capital, except after initials and abbreviations."""
    out, start = [], 0
    for m in re.finditer(r"[.!?]\s+(?=[A-Z(\"])", paragraph):
        word = paragraph[start : m.start() + 1].split()[-1]
        if word.lower() in ABBREVIATIONS or re.search(r"(^|[.\[(])[A-Za-z]\.$", word):
            continue
        out.append(paragraph[start : m.start() + 1].strip())
        start = m.end()
    out.append(paragraph[start:].strip())
    return out


def extract_sentences(descr_dir):
    """Prose sentences of the scikit-learn dataset descriptions, one per line, in file order."""
    out, seen = [], set()
    for path in sorted(glob.glob(os.path.join(descr_dir, "*.rst"))):
        paragraphs, cur = [], []
        for line in open(path, encoding="utf-8"):
            s = line.rstrip("\n")
            st = s.strip()
            prose = (
                st
                and not st.startswith((":", "..", "=", "-", "*", "+", "|", "#"))
                and not re.match(r"^[=\-~^+|]{3,}", st)
                and not re.match(r"^\d+\.\s", st)
                and not s.startswith((" ", "\t"))
            )
            if prose:
                cur.append(st)
            elif cur:
                paragraphs.append(" ".join(cur))
                cur = []
        if cur:
            paragraphs.append(" ".join(cur))
        for p in paragraphs:
            p = re.sub(r":\w+:`([^`<]*?)\s*(<[^>]*>)?`", r"\1", p)  # :ref:`text <target>`
            p = re.sub(r"`([^`<]*?)\s*<[^>]*>`_+", r"\1", p)  # `text <url>`_
            p = p.replace("``", "").replace("**", "").replace("`", "")
            p = re.sub(r"\s+", " ", p).strip()
            for sent in split_sentences(p):
                words = sent.split()
                if 6 <= len(words) <= 60 and sent[-1] in ".!?" and sent not in seen:
                    seen.add(sent)
                    out.append(sent)
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return (x * 0.5 * (1.0 + _erf(x.astype(np.float64) / math.sqrt(2.0)).astype(x.dtype))).astype(x.dtype)


def forward(w, cfg, ids, mask, dtype=np.float32):
    """Sentence embeddings [batch, hidden] and token embeddings [batch, seq, hidden]."""
    g = lambda k: w[k].astype(dtype)
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    dh = h // nh
    eps = cfg["layer_norm_eps"]
    b, s = ids.shape
    x = g("embeddings.word_embeddings.weight")[ids]
    x = x + g("embeddings.position_embeddings.weight")[:s][None]
    x = x + g("embeddings.token_type_embeddings.weight")[0][None, None]
    x = layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    bias = (1.0 - mask.astype(dtype))[:, None, None, :] * np.finfo(dtype).min

    def lin(name, y):
        return y @ g(name + ".weight").T + g(name + ".bias")

    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}"
        heads = lambda y: y.reshape(b, s, nh, dh).transpose(0, 2, 1, 3)
        q = heads(lin(p + ".attention.self.query", x))
        k = heads(lin(p + ".attention.self.key", x))
        v = heads(lin(p + ".attention.self.value", x))
        sc = (q @ k.transpose(0, 1, 3, 2)) / dtype(math.sqrt(dh)) + bias
        sc = sc - sc.max(-1, keepdims=True)
        e = np.exp(sc)
        pr = e / e.sum(-1, keepdims=True)
        c = (pr @ v).transpose(0, 2, 1, 3).reshape(b, s, h)
        a = layer_norm(lin(p + ".attention.output.dense", c) + x,
                       g(p + ".attention.output.LayerNorm.weight"), g(p + ".attention.output.LayerNorm.bias"), eps)
        i = gelu(lin(p + ".intermediate.dense", a))
        x = layer_norm(lin(p + ".output.dense", i) + a,
                       g(p + ".output.LayerNorm.weight"), g(p + ".output.LayerNorm.bias"), eps)
    m = mask.astype(dtype)[:, :, None]
    mean = (x * m).sum(1) / np.maximum(m.sum(1), dtype(1e-9))
    emb = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), dtype(1e-12))
    return emb.astype(dtype), x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--sklearn-descr")
    ap.add_argument("--out", default="suites/data/minilm_ref")
    ap.add_argument("--embed", type=int, default=16, help="sentences in the embedding fixture")
    args = ap.parse_args()

    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    os.makedirs(args.out, exist_ok=True)
    sent_path = os.path.join(args.out, "sentences.txt")
    if args.sklearn_descr:
        sentences = extract_sentences(args.sklearn_descr)
        with open(sent_path, "w", encoding="utf-8") as f:
            f.write("\n".join(sentences) + "\n")
    sentences = [l.strip() for l in open(sent_path, encoding="utf-8") if l.strip()]
    print(f"{len(sentences)} sentences")

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_padding()  # pad per batch instead; truncation stays as tokenizer.json sets it (128)
    with open(os.path.join(args.out, "tokenizer_cases.jsonl"), "w", encoding="utf-8") as f:
        for text in sentences + EDGE_CASES:
            f.write(json.dumps({"text": text, "ids": tok.encode(text).ids}, ensure_ascii=False) + "\n")

    # Evenly spaced sentences, padded to the longest as one batch.
    step = max(1, len(sentences) // args.embed)
    chosen = sentences[::step][: args.embed]
    encs = [tok.encode(t).ids for t in chosen]
    seq = max(map(len, encs))
    ids = np.zeros((len(encs), seq), np.int64)
    mask = np.zeros((len(encs), seq), np.int64)
    for r, e in enumerate(encs):
        ids[r, : len(e)] = e
        mask[r, : len(e)] = 1
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    w = load_file(os.path.join(args.model, "model.safetensors"))
    emb32, _ = forward(w, cfg, ids, mask, np.float32)
    emb64, _ = forward(w, cfg, ids, mask, np.float64)
    with open(os.path.join(args.out, "embed_sentences.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(chosen) + "\n")
    np.save(os.path.join(args.out, "input_ids.npy"), ids)
    np.save(os.path.join(args.out, "attention_mask.npy"), mask)
    np.save(os.path.join(args.out, "sentence_embeddings_f32.npy"), emb32)
    print(f"embedding batch {ids.shape}; float32 vs float64 reference max |diff| "
          f"{np.abs(emb32 - emb64).max():.3e}")


if __name__ == "__main__":
    main()
