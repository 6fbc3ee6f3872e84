//! Text encoders (feature `text`): what a service needs around a Hugging Face-style sentence
//! model exported to ONNX (BERT, MiniLM, MPNet and their kind), so that its pipeline holds
//! only its own rules.
//!
//! - [`Encoder`]: texts (or token ids) to the model's ids with the version's own
//!   `tokenizer.json` (the same `tokenizers` library Python uses, so ids match token for
//!   token), cut to the model's limit (`metadata.max_tokens` in the manifest) keeping `[CLS]`
//!   and the closing `[SEP]` as Python's truncation does, or refused past it.
//! - [`Encoded::inputs`] and [`padding`]: the three inputs such graphs take (`input_ids`,
//!   `attention_mask`, `token_type_ids`) as one text's run, and the [`Padding`] that lets the
//!   core batch texts of different lengths into one run and cut each one's output back.
//! - [`mean_pool`]: per-token states to one vector per text, L2-normalised when asked, as
//!   sentence-transformers does.

use ndarray::{Array2, ArrayView2, Axis};

use crate::model::{Manifest, Model};
use crate::{Error, Padding, Result, Tensor};

/// A model version's tokenizer and token limit, read once per version (see [`Encoder::of`]).
#[derive(Debug)]
pub struct Encoder {
    tokenizer: tokenizers::Tokenizer,
    /// The most tokens one text may have, `[CLS]` and `[SEP]` included.
    max_tokens: usize,
    cls: i64,
    sep: i64,
    vocabulary: i64,
}

/// One text as the model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The ids the model runs on, `[CLS]` first and `[SEP]` last.
    pub ids: Vec<i64>,
    /// Whether the text was cut to the model's limit.
    pub truncated: bool,
}

impl Encoded {
    /// The model's three inputs for this one text (a batch of one row; the core batches rows
    /// of many requests when the pipeline's [`padding`] says how).
    pub fn inputs(&self) -> Result<[(&'static str, Tensor); 3]> {
        let shape = (1, self.ids.len());
        let ids = Array2::from_shape_vec(shape, self.ids.clone())
            .map_err(|e| Error::pipeline(format!("input_ids: {e}")))?;
        Ok([
            ("input_ids", Tensor::from(ids)),
            ("attention_mask", Tensor::from(Array2::<i64>::ones(shape))),
            ("token_type_ids", Tensor::from(Array2::<i64>::zeros(shape))),
        ])
    }
}

impl Encoder {
    /// The encoder of `model`'s version: read from its `tokenizer.json` and manifest the first
    /// time, kept with the version after (so a new version brings its own). Call it from
    /// `Pipeline::prepare_model` too, so that a version without a usable tokenizer never
    /// serves.
    pub fn of(model: &Model) -> Result<&Encoder> {
        model.cached(|manifest| Encoder::load(model, manifest))
    }

    /// Reads `model`'s `tokenizer.json` (checked against `manifest`'s sha256) and
    /// `metadata.max_tokens`.
    pub fn load(model: &Model, manifest: &Manifest) -> Result<Self> {
        let invalid = |what: String| Error::pipeline(format!("{}: {what}", manifest.label()));
        let bytes = model.read_file("tokenizer.json")?;
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| invalid(format!("tokenizer.json is not a tokenizer: {e}")))?;
        // A file may pad and truncate for its training; requests are cut here, to the
        // manifest's limit, and padded by the batcher to the longest in each batch.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| invalid(e.to_string()))?;
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .map(i64::from)
                .ok_or_else(|| invalid(format!("the tokenizer has no {token}")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let vocabulary = i64::try_from(tokenizer.get_vocab_size(true)).unwrap_or(i64::MAX);
        let max_tokens = metadata_count(manifest, "max_tokens")?;
        if max_tokens < 2 {
            return Err(invalid("metadata.max_tokens leaves no room for [CLS] and [SEP]".into()));
        }
        Ok(Self { tokenizer, max_tokens, cls, sep, vocabulary })
    }

    /// The most tokens one text may have, `[CLS]` and `[SEP]` included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// `text`'s ids, cut to the model's limit when `truncate`, else refused past it with a 422
    /// naming `field` (as is any text the tokenizer cannot read).
    pub fn encode(&self, text: &str, field: &str, truncate: bool) -> Result<Encoded> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::invalid_field(field, format!("cannot be tokenised: {e}")))?;
        self.fit(encoding.get_ids().iter().copied().map(i64::from).collect(), field, truncate)
    }

    /// Token ids a client tokenised itself (without `[CLS]` and `[SEP]`, which are added),
    /// checked against the vocabulary and the limit like [`Encoder::encode`].
    pub fn encode_ids(&self, ids: &[i64], field: &str, truncate: bool) -> Result<Encoded> {
        if let Some(bad) = ids.iter().find(|&&id| !(0..self.vocabulary).contains(&id)) {
            let detail = format!("{bad} is not a token id below {}", self.vocabulary);
            return Err(Error::invalid_field(field, detail));
        }
        let ids = [self.cls].into_iter().chain(ids.iter().copied()).chain([self.sep]).collect();
        self.fit(ids, field, truncate)
    }

    /// `ids` within the limit: as they are, cut keeping the closing `[SEP]`, or refused.
    fn fit(&self, mut ids: Vec<i64>, field: &str, truncate: bool) -> Result<Encoded> {
        if ids.len() <= self.max_tokens {
            return Ok(Encoded { ids, truncated: false });
        }
        if !truncate {
            let detail = format!(
                "has {} tokens, more than the model's {}; send `truncate: true` to cut it",
                ids.len(),
                self.max_tokens
            );
            return Err(Error::invalid_field(field, detail));
        }
        ids.truncate(self.max_tokens - 1);
        ids.push(self.sep);
        Ok(Encoded { ids, truncated: true })
    }
}

/// A positive whole number in the manifest's `metadata` under `key` (a sentence model's
/// `max_tokens` or `dimension`), or an error naming the version and the key.
pub fn metadata_count(manifest: &Manifest, key: &str) -> Result<usize> {
    manifest.metadata[key]
        .as_u64()
        .filter(|&n| n > 0)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            Error::pipeline(format!(
                "{}: metadata.{key} is not a positive integer",
                manifest.label()
            ))
        })
}

/// The padding of [`Encoded::inputs`] for `Pipeline::padding`: ids, mask and types padded
/// with 0 to the longest text of a batch, and each text's `output` (per-token states,
/// `[batch, tokens, ...]`) cut back to its own tokens.
pub fn padding(output: &str) -> Padding {
    Padding::new()
        .input("input_ids", 0.0)
        .input("attention_mask", 0.0)
        .input("token_type_ids", 0.0)
        .output(output)
}

/// The mean of `states` (`[tokens, dimension]`: one text's states, padding already cut
/// away) over its tokens, scaled to unit length when `normalize`. Sums are kept in `f64`.
pub fn mean_pool(states: ArrayView2<'_, f32>, normalize: bool) -> Vec<f32> {
    let count = states.len_of(Axis(0)).max(1) as f64;
    let mut mean: Vec<f64> = vec![0.0; states.len_of(Axis(1))];
    for token in states.rows() {
        mean.iter_mut().zip(token).for_each(|(m, &x)| *m += f64::from(x));
    }
    mean.iter_mut().for_each(|m| *m /= count);
    if normalize {
        let norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt().max(1e-12);
        mean.iter_mut().for_each(|m| *m /= norm);
    }
    mean.into_iter().map(|m| m as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_is_over_tokens_and_normalising_makes_it_unit_length() {
        let states = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 6.0]]);
        assert_eq!(mean_pool(states.view(), false), vec![2.0, 4.0]);
        let unit = mean_pool(states.view(), true);
        let length: f32 = unit.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-6 && (unit[1] / unit[0] - 2.0).abs() < 1e-6, "{unit:?}");
    }

    #[test]
    fn one_text_is_a_batch_of_one_with_a_full_mask() {
        let inputs = Encoded { ids: vec![101, 7, 102], truncated: false }.inputs().unwrap();
        let names: Vec<_> = inputs.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
        for (name, tensor) in &inputs {
            assert_eq!(tensor.shape(), [1, 3], "{name}");
        }
    }
}
