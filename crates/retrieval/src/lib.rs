//! Pure retrieval maths: reciprocal rank fusion of ranked lists, and exact top-k selection.
//!
//! No IO: the index crate runs the searches, this crate decides how their rankings combine.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::Hash;

/// The constant `k` of reciprocal rank fusion (Cormack et al., 2009). 60 is the value from the
/// paper and what most hybrid search systems use; it damps the weight of the very top ranks.
pub const RRF_K: f32 = 60.0;

/// Fuses several rankings (best first) into one by reciprocal rank fusion: each item scores
/// `sum(1 / (k + rank))` over the lists it appears in (rank starts at 1). Ties are broken by the
/// best single rank, then by first appearance, so the result is deterministic.
pub fn reciprocal_rank_fusion<K: Eq + Hash + Clone>(rankings: &[&[K]], k: f32, limit: usize) -> Vec<(K, f32)> {
    struct Acc {
        score: f32,
        best_rank: usize,
        first_seen: usize,
    }
    let mut acc: HashMap<K, Acc> = HashMap::new();
    let mut seen = 0usize;
    for ranking in rankings {
        for (i, key) in ranking.iter().enumerate() {
            let rank = i + 1;
            let contribution = 1.0 / (k + rank as f32);
            let entry = acc.entry(key.clone()).or_insert_with(|| {
                seen += 1;
                Acc { score: 0.0, best_rank: usize::MAX, first_seen: seen }
            });
            entry.score += contribution;
            entry.best_rank = entry.best_rank.min(rank);
        }
    }
    let mut fused: Vec<(K, Acc)> = acc.into_iter().collect();
    fused.sort_by(|(_, a), (_, b)| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(Ordering::Equal)
            .then(a.best_rank.cmp(&b.best_rank))
            .then(a.first_seen.cmp(&b.first_seen))
    });
    fused.into_iter().take(limit).map(|(key, a)| (key, a.score)).collect()
}

/// Keeps the `k` highest-scoring items seen so far; `into_sorted` returns them best first.
/// Used by the exact vector scan so that it never sorts all candidates.
pub struct TopK<T> {
    k: usize,
    items: Vec<(f32, T)>,
    /// Index of the current minimum in `items` once it is full.
    min_at: usize,
}

impl<T> TopK<T> {
    pub fn new(k: usize) -> Self {
        Self { k, items: Vec::with_capacity(k), min_at: 0 }
    }

    /// The score an item must beat to enter, once the heap is full.
    pub fn threshold(&self) -> Option<f32> {
        (self.items.len() == self.k && self.k > 0).then(|| self.items[self.min_at].0)
    }

    pub fn push(&mut self, score: f32, item: T) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        if self.items.len() < self.k {
            self.items.push((score, item));
            if self.items.len() == self.k {
                self.recompute_min();
            }
        } else if score > self.items[self.min_at].0 {
            self.items[self.min_at] = (score, item);
            self.recompute_min();
        }
    }

    fn recompute_min(&mut self) {
        let mut min_at = 0;
        for (i, (s, _)) in self.items.iter().enumerate() {
            if *s < self.items[min_at].0 {
                min_at = i;
            }
        }
        self.min_at = min_at;
    }

    pub fn into_sorted(mut self) -> Vec<(f32, T)> {
        self.items.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal));
        self.items
    }
}

/// Dot product of two equal-length vectors. For unit vectors this is the cosine similarity.
/// Written as four independent accumulators so the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for i in 0..chunks {
        let (x, y) = (&a[i * 8..i * 8 + 8], &b[i * 8..i * 8 + 8]);
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_agreement_between_rankings() {
        let bm25 = ["a", "b", "c"];
        let dense = ["c", "a", "d"];
        let fused = reciprocal_rank_fusion(&[&bm25, &dense], RRF_K, 10);
        let keys: Vec<&str> = fused.iter().map(|(k, _)| *k).collect();
        // a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63
        assert_eq!(keys, vec!["a", "c", "b", "d"]);
        let expected_a = 1.0 / 61.0 + 1.0 / 62.0;
        assert!((fused[0].1 - expected_a).abs() < 1e-7);
    }

    #[test]
    fn rrf_respects_limit_and_empty_input() {
        let one = [1, 2, 3, 4];
        assert_eq!(reciprocal_rank_fusion(&[&one], RRF_K, 2).len(), 2);
        let empty: [&[i32]; 0] = [];
        assert!(reciprocal_rank_fusion(&empty, RRF_K, 5).is_empty());
    }

    #[test]
    fn top_k_keeps_the_best() {
        let mut top = TopK::new(3);
        for (i, s) in [0.1, 0.9, 0.5, 0.3, 0.95, f32::NAN, 0.2].iter().enumerate() {
            top.push(*s, i);
        }
        let got: Vec<usize> = top.into_sorted().into_iter().map(|(_, i)| i).collect();
        assert_eq!(got, vec![4, 1, 2]);
        let mut none = TopK::<u8>::new(0);
        none.push(1.0, 1);
        assert!(none.into_sorted().is_empty());
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.01).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
