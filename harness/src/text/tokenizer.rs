//! BERT WordPiece tokenization, matching HF `tokenizers` for a `tokenizer.json` with a `BertNormalizer`, a
//! `BertPreTokenizer`, a `WordPiece` model and the `[CLS] A [SEP]` template (all-MiniLM-L6-v2 and every BERT
//! uncased / cased checkpoint).
//!
//! Steps, in the order `tokenizers` applies them:
//! 1. special (added) tokens such as `[CLS]` or `[MASK]` written in the raw text are kept whole;
//! 2. normalisation: drop NUL, U+FFFD and control characters (Unicode C*, but tab / newline / carriage return
//!    become spaces like every other whitespace); put spaces around CJK ideographs; strip accents (NFD, then drop
//!    nonspacing marks, Mn) when lower-casing unless `strip_accents` says otherwise; lower-case;
//! 3. pre-tokenisation: split on whitespace (dropped) and around every punctuation character (ASCII
//!    punctuation and Unicode P*), each kept as its own word;
//! 4. WordPiece: greedy longest-match-first over each word, continuation pieces prefixed `##`; a word with no
//!    full cover, or longer than `max_input_chars_per_word` characters, becomes one `[UNK]`;
//! 5. truncation to `max_length - 2` pieces, then `[CLS] ... [SEP]`.
//!
//! [`Tokenizer::batch`] pads a batch to its longest sequence with `[PAD]` and returns the attention mask.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use super::TextError;
use super::unicode_tables::{MARK_NONSPACING, OTHER, PUNCTUATION};
use crate::ir::Tensor;

/// Normalisation and WordPiece settings (the `normalizer` and `model` sections of `tokenizer.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizerOptions {
    pub clean_text: bool,
    pub handle_chinese_chars: bool,
    /// `None` follows `lowercase`, as in `tokenizers`.
    pub strip_accents: Option<bool>,
    pub lowercase: bool,
    pub continuing_subword_prefix: String,
    pub max_input_chars_per_word: usize,
    /// Longest sequence produced, `[CLS]` and `[SEP]` included.
    pub max_length: usize,
    pub unk_token: String,
    pub cls_token: String,
    pub sep_token: String,
    pub pad_token: String,
}

impl TokenizerOptions {
    /// BERT uncased (all-MiniLM-L6-v2's `tokenizer.json`): lower-case, strip accents, 128 tokens.
    pub fn bert_uncased() -> Self {
        TokenizerOptions {
            clean_text: true,
            handle_chinese_chars: true,
            strip_accents: None,
            lowercase: true,
            continuing_subword_prefix: "##".into(),
            max_input_chars_per_word: 100,
            max_length: 128,
            unk_token: "[UNK]".into(),
            cls_token: "[CLS]".into(),
            sep_token: "[SEP]".into(),
            pad_token: "[PAD]".into(),
        }
    }
}

/// One tokenised batch, padded to its longest sequence: `[batch, seq]` token ids and attention mask (1 for
/// real tokens, 0 for padding), both i64 as the BERT graph takes them.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBatch {
    pub input_ids: Array2<i64>,
    pub attention_mask: Array2<i64>,
}

impl TokenBatch {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.input_ids.nrows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Padded sequence length.
    pub fn seq_len(&self) -> usize {
        self.input_ids.ncols()
    }

    /// Named graph inputs (`input_ids`, `attention_mask`) for `Fp32Executor::run_tensors`.
    pub fn to_inputs(&self) -> Vec<(&'static str, Tensor)> {
        vec![
            ("input_ids", Tensor::I64(self.input_ids.clone().into_dyn())),
            (
                "attention_mask",
                Tensor::I64(self.attention_mask.clone().into_dyn()),
            ),
        ]
    }
}

/// A BERT WordPiece tokenizer; see the module docs.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    vocab: HashMap<String, i64>,
    options: TokenizerOptions,
    unk_id: i64,
    cls_id: i64,
    sep_id: i64,
    pad_id: i64,
    /// Tokens matched whole in the raw text, longest first.
    special: Vec<(String, i64)>,
    source: PathBuf,
}

#[derive(Deserialize)]
struct JsonFile {
    #[serde(default)]
    added_tokens: Vec<JsonAddedToken>,
    normalizer: Option<JsonNormalizer>,
    pre_tokenizer: Option<JsonTyped>,
    truncation: Option<JsonTruncation>,
    model: JsonModel,
}

#[derive(Deserialize)]
struct JsonAddedToken {
    id: i64,
    content: String,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize)]
struct JsonNormalizer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes")]
    clean_text: bool,
    #[serde(default = "yes")]
    handle_chinese_chars: bool,
    #[serde(default)]
    strip_accents: Option<bool>,
    #[serde(default = "yes")]
    lowercase: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct JsonTyped {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct JsonTruncation {
    max_length: usize,
}

#[derive(Deserialize)]
struct JsonModel {
    #[serde(rename = "type")]
    kind: String,
    unk_token: String,
    #[serde(default = "default_prefix")]
    continuing_subword_prefix: String,
    #[serde(default = "default_max_chars")]
    max_input_chars_per_word: usize,
    vocab: HashMap<String, i64>,
}

fn default_prefix() -> String {
    "##".into()
}

fn default_max_chars() -> usize {
    100
}

impl Tokenizer {
    /// Reads a HF `tokenizer.json` (BertNormalizer, BertPreTokenizer, WordPiece); other pipelines are an error.
    /// `max_length` is the file's truncation length, or 512 when it sets none.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, TextError> {
        let bytes = crate::data::read_maybe_gzip(path).map_err(|e| TextError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let file: JsonFile = serde_json::from_slice(&bytes).map_err(|e| TextError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let unsupported = |what: &str, got: &str| TextError::Format {
            path: path.to_owned(),
            message: format!(
                "{what} \"{got}\" is not supported (only BERT WordPiece tokenizers are)"
            ),
        };
        if file.model.kind != "WordPiece" {
            return Err(unsupported("model type", &file.model.kind));
        }
        let mut options = TokenizerOptions::bert_uncased();
        match &file.normalizer {
            Some(n) if n.kind == "BertNormalizer" => {
                options.clean_text = n.clean_text;
                options.handle_chinese_chars = n.handle_chinese_chars;
                options.strip_accents = n.strip_accents;
                options.lowercase = n.lowercase;
            }
            Some(n) => return Err(unsupported("normalizer", &n.kind)),
            None => {
                options.clean_text = false;
                options.handle_chinese_chars = false;
                options.strip_accents = Some(false);
                options.lowercase = false;
            }
        }
        if let Some(p) = &file.pre_tokenizer
            && p.kind != "BertPreTokenizer"
        {
            return Err(unsupported("pre-tokenizer", &p.kind));
        }
        options.unk_token = file.model.unk_token.clone();
        options.continuing_subword_prefix = file.model.continuing_subword_prefix.clone();
        options.max_input_chars_per_word = file.model.max_input_chars_per_word;
        options.max_length = file.truncation.as_ref().map_or(512, |t| t.max_length);
        let mut vocab = file.model.vocab;
        let mut special = Vec::new();
        for t in file.added_tokens {
            vocab.entry(t.content.clone()).or_insert(t.id);
            if t.special {
                special.push((t.content, t.id));
            }
        }
        Self::build(vocab, options, special, path)
    }

    /// Reads a `vocab.txt` (one token a line, id = line number; gzip is detected) with the given options.
    pub fn from_vocab_txt(path: &Path, options: TokenizerOptions) -> Result<Self, TextError> {
        let reader = crate::data::open_maybe_gzip(path).map_err(|e| TextError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut vocab = HashMap::new();
        for (i, line) in BufReader::new(reader).lines().enumerate() {
            let line = line.map_err(|e| TextError::Io {
                path: path.to_owned(),
                message: format!("line {}: {e}", i + 1),
            })?;
            let token = line.trim_end_matches('\r').to_owned();
            vocab.entry(token).or_insert(i as i64);
        }
        let special = [
            &options.unk_token,
            &options.cls_token,
            &options.sep_token,
            &options.pad_token,
            &"[MASK]".to_owned(),
        ]
        .into_iter()
        .filter_map(|t| vocab.get(t).map(|&id| (t.clone(), id)))
        .collect();
        Self::build(vocab, options, special, path)
    }

    fn build(
        vocab: HashMap<String, i64>,
        options: TokenizerOptions,
        mut special: Vec<(String, i64)>,
        path: &Path,
    ) -> Result<Self, TextError> {
        let id = |token: &str| {
            vocab.get(token).copied().ok_or_else(|| TextError::Format {
                path: path.to_owned(),
                message: format!("the vocabulary has no \"{token}\" token"),
            })
        };
        if options.max_length < 2 {
            return Err(TextError::Format {
                path: path.to_owned(),
                message: format!(
                    "max_length {} leaves no room for [CLS] and [SEP]",
                    options.max_length
                ),
            });
        }
        special.retain(|(t, _)| !t.is_empty());
        special.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(Tokenizer {
            unk_id: id(&options.unk_token)?,
            cls_id: id(&options.cls_token)?,
            sep_id: id(&options.sep_token)?,
            pad_id: id(&options.pad_token)?,
            vocab,
            options,
            special,
            source: path.to_owned(),
        })
    }

    /// The same tokenizer truncating to `max_length` tokens (`[CLS]` and `[SEP]` included; at least 3).
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.options.max_length = max_length.max(3);
        self
    }

    pub fn options(&self) -> &TokenizerOptions {
        &self.options
    }

    /// Where the vocabulary was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.vocab.get(token).copied()
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// The word pieces of `text` (no `[CLS]` / `[SEP]`, no truncation), as ids.
    pub fn word_pieces(&self, text: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // The earliest special token in the rest of the text, longest first at one position.
            let next = self
                .special
                .iter()
                .filter_map(|(t, id)| rest.find(t.as_str()).map(|at| (at, t.len(), *id)))
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            match next {
                Some((at, len, id)) => {
                    self.plain_pieces(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.plain_pieces(rest, &mut ids);
                    break;
                }
            }
        }
        ids
    }

    /// `[CLS] pieces [SEP]`, the pieces truncated so that the whole fits `max_length`.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut pieces = self.word_pieces(text);
        pieces.truncate(self.options.max_length - 2);
        let mut ids = Vec::with_capacity(pieces.len() + 2);
        ids.push(self.cls_id);
        ids.extend(pieces);
        ids.push(self.sep_id);
        ids
    }

    /// Encodes every text and pads to the longest, with the attention mask.
    pub fn batch<S: AsRef<str>>(&self, texts: &[S]) -> TokenBatch {
        let encoded: Vec<Vec<i64>> = texts.iter().map(|t| self.encode(t.as_ref())).collect();
        pad_batch(&encoded, self.pad_id)
    }

    fn plain_pieces(&self, text: &str, ids: &mut Vec<i64>) {
        let normalized = self.normalize(text);
        for word in pre_tokenize(&normalized) {
            self.word_piece(word, ids);
        }
    }

    /// BertNormalizer: clean, space CJK, strip accents, lower-case.
    pub fn normalize(&self, text: &str) -> String {
        let o = &self.options;
        let mut s = String::with_capacity(text.len());
        for c in text.chars() {
            if o.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    continue;
                }
                if is_whitespace(c) {
                    s.push(' ');
                    continue;
                }
            }
            if o.handle_chinese_chars && is_chinese_char(c) {
                s.push(' ');
                s.push(c);
                s.push(' ');
            } else {
                s.push(c);
            }
        }
        if o.strip_accents.unwrap_or(o.lowercase) {
            s = s.nfd().filter(|&c| !in_table(MARK_NONSPACING, c)).collect();
        }
        if o.lowercase {
            s = s.chars().flat_map(char::to_lowercase).collect();
        }
        s
    }

    fn word_piece(&self, word: &str, ids: &mut Vec<i64>) {
        if word.chars().count() > self.options.max_input_chars_per_word {
            ids.push(self.unk_id);
            return;
        }
        let first = ids.len();
        let prefix = &self.options.continuing_subword_prefix;
        let mut candidate = String::with_capacity(word.len() + prefix.len());
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str(prefix);
                }
                candidate.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(&candidate) {
                    found = Some(id);
                    break;
                }
                // Step back one character.
                end = word[..end]
                    .char_indices()
                    .next_back()
                    .map_or(start, |(i, _)| i);
            }
            match found {
                Some(id) => {
                    ids.push(id);
                    start = end;
                }
                None => {
                    ids.truncate(first);
                    ids.push(self.unk_id);
                    return;
                }
            }
        }
    }
}

/// Pads id sequences to the longest with `pad_id`; the mask is 1 on real tokens.
pub fn pad_batch(sequences: &[Vec<i64>], pad_id: i64) -> TokenBatch {
    let seq = sequences.iter().map(Vec::len).max().unwrap_or(0);
    let mut input_ids = Array2::from_elem((sequences.len(), seq), pad_id);
    let mut attention_mask = Array2::zeros((sequences.len(), seq));
    for (row, ids) in sequences.iter().enumerate() {
        for (col, &id) in ids.iter().enumerate() {
            input_ids[[row, col]] = id;
            attention_mask[[row, col]] = 1;
        }
    }
    TokenBatch {
        input_ids,
        attention_mask,
    }
}

/// BertPreTokenizer: words split on whitespace (dropped) and around punctuation (kept, one character each).
fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || is_punctuation(c) {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
            if !c.is_whitespace() {
                words.push(&text[i..i + c.len_utf8()]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    words
}

fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && in_table(OTHER, c)
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || in_table(PUNCTUATION, c)
}

/// The CJK ideograph blocks BERT isolates.
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Tokenizer {
        let vocab: HashMap<String, i64> = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "hello", ",",
            "!", "cafe", "東",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as i64))
        .collect();
        let special = vec![("[MASK]".to_owned(), 4)];
        Tokenizer::build(
            vocab,
            TokenizerOptions::bert_uncased(),
            special,
            Path::new("tiny"),
        )
        .unwrap()
    }

    #[test]
    fn greedy_longest_match_first() {
        let t = tiny();
        assert_eq!(t.word_pieces("unaffable"), vec![5, 6, 7]);
        assert_eq!(t.word_pieces("Hello, UNAFFABLE!"), vec![8, 9, 5, 6, 7, 10]);
        // No full cover: the whole word is one [UNK].
        assert_eq!(t.word_pieces("unaffablex"), vec![1]);
    }

    #[test]
    fn normalises_accents_whitespace_controls_and_cjk() {
        let t = tiny();
        assert_eq!(t.normalize("Café\tNAÏVE\u{0}\u{200b}"), "cafe naive");
        assert_eq!(t.word_pieces("CAFÉ東"), vec![11, 12]);
    }

    #[test]
    fn specials_are_kept_whole_and_sequences_truncated() {
        let mut t = tiny();
        assert_eq!(t.word_pieces("hello[MASK]hello"), vec![8, 4, 8]);
        t.options.max_length = 4;
        assert_eq!(t.encode("hello hello hello"), vec![2, 8, 8, 3]);
        let b = t.batch(&["hello", "hello hello"]);
        assert_eq!(b.input_ids.row(0).to_vec(), vec![2, 8, 3, 0]);
        assert_eq!(b.attention_mask.row(0).to_vec(), vec![1, 1, 1, 0]);
        assert_eq!(b.attention_mask.row(1).to_vec(), vec![1, 1, 1, 1]);
    }
}
