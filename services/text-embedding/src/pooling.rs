//! From the model's per-token states to one vector per text: the mean over the text's tokens
//! (the batcher already cut padding away, so every row is a real token), then, when asked,
//! L2 normalisation, as sentence-transformers does for all-MiniLM-L6-v2.

use ndarray::{ArrayView2, Axis};

/// The mean of `states` (`[tokens, dimension]`) over its tokens, normalised to unit length
/// when `normalize`. Sums are kept in `f64`.
pub(crate) fn pool(states: ArrayView2<'_, f32>, normalize: bool) -> Vec<f32> {
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
        assert_eq!(pool(states.view(), false), vec![2.0, 4.0]);
        let unit = pool(states.view(), true);
        let length: f32 = unit.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-6 && (unit[1] / unit[0] - 2.0).abs() < 1e-6, "{unit:?}");
    }
}
