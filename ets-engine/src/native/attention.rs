//! Attention over a tree of K/V segments.
//!
//! Each query row attends over a list of parts: (segment, how many of its first tokens it
//! sees), its ancestors' node segments oldest first, then its own pending tokens. Segments are
//! read in place, segment by segment for all the rows that share them, and never copied or
//! concatenated per sequence. Grouped-query attention maps query head `h` to key/value head
//! `h / (heads / kv_heads)`.
//!
//! The per-segment results are merged through the maximum over all of a row's segments: a
//! first pass scores every segment and keeps the row's maximum (the log-sum-exp shift), a
//! second pass adds `exp(score − max)` and the weighted values in token order. An online merge
//! that rescales partial sums segment by segment is mathematically the same but rounds
//! differently from one softmax over the concatenation; measured on SmolLM2-135M Q8_0, such
//! 1e-8 differences flip the 8-bit rounding of later activations and moved logits by up to 0.8.
//! With one shift and token order, a row's output is bit-identical however its context is split
//! into segments, so a branch decoded through shared segments equals the same tokens
//! prefilled from scratch.

use rayon::prelude::*;

use super::kv::KvElem;

/// K and V of one segment, token-major (`[tokens, kv_heads, head_dim]`), in the model's
/// stored precision `T` (widened to f32 one head row at a time).
pub(crate) struct KvSlice<'a, T> {
    pub k: &'a [T],
    pub v: &'a [T],
}

impl<T> Clone for KvSlice<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for KvSlice<'_, T> {}

/// Head layout of the attention.
#[derive(Clone, Copy)]
pub(crate) struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// `parts[row]`: (index into the slices, visible tokens) pairs the row attends over, in
/// position order; slice indices must increase along a row (true of root-to-leaf paths whose
/// segments are numbered by first appearance, with pending buffers last).
pub(crate) type RowParts = Vec<Vec<(usize, usize)>>;

/// One row's use of one slice.
struct Use {
    row: usize,
    visible: usize,
    /// Where the slice's scores start in the row's score buffer.
    offset: usize,
}

/// Attention output `[rows, heads, head_dim]` for queries `q` (same layout, RoPE applied).
pub(crate) fn tree_attention<T: KvElem>(
    q: &[f32],
    shape: Heads,
    slices: &[KvSlice<'_, T>],
    parts: &RowParts,
) -> Vec<f32> {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    let width = heads * hd;
    let rows = parts.len();
    let mut out = vec![0f32; rows * width];
    if rows == 0 {
        return out;
    }
    for row in parts {
        debug_assert!(
            row.windows(2).all(|w| w[0].0 < w[1].0),
            "parts out of order"
        );
    }
    let threads = rayon::current_num_threads().max(1);
    let chunk_rows = rows.div_ceil(threads);
    out.par_chunks_mut(chunk_rows * width)
        .enumerate()
        .for_each(|(chunk, out)| {
            let first = chunk * chunk_rows;
            let last = (first + chunk_rows).min(rows);
            let n = last - first;
            // Users of each slice among this chunk's rows, and each row's score buffer.
            let mut users: Vec<Vec<Use>> = (0..slices.len()).map(|_| Vec::new()).collect();
            let mut score_start = Vec::with_capacity(n + 1);
            let mut total = 0;
            for (row, row_parts) in parts.iter().enumerate().take(last).skip(first) {
                score_start.push(total);
                let mut offset = 0;
                for &(s, visible) in row_parts {
                    if visible > 0 {
                        users[s].push(Use {
                            row,
                            visible,
                            offset,
                        });
                        offset += visible;
                    }
                }
                total += offset * heads;
            }
            let mut scores = vec![0f32; total];
            let row_len = |local: usize| {
                (score_start.get(local + 1).copied().unwrap_or(total) - score_start[local]) / heads
            };
            let scale = 1.0 / (hd as f32).sqrt();
            let group = heads / kv_heads;
            // One key or value head row, widened to f32.
            let mut wide = vec![0f32; hd];
            // Pass 1: scores, segment by segment.
            for (s, users) in users.iter().enumerate() {
                let slice = slices[s];
                for u in users {
                    let local = u.row - first;
                    let len = row_len(local);
                    for t in 0..u.visible {
                        for g in 0..kv_heads {
                            T::widen(&slice.k[(t * kv_heads + g) * hd..][..hd], &mut wide);
                            for h in g * group..(g + 1) * group {
                                let qh = &q[u.row * width + h * hd..][..hd];
                                let at = score_start[local] + h * len + u.offset + t;
                                scores[at] = dot(qh, &wide) * scale;
                            }
                        }
                    }
                }
            }
            // The shift of each (row, head): its maximum over every segment.
            let mut max = vec![f32::NEG_INFINITY; n * heads];
            for local in 0..n {
                let len = row_len(local);
                for h in 0..heads {
                    let start = score_start[local] + h * len;
                    max[local * heads + h] = scores[start..start + len]
                        .iter()
                        .copied()
                        .fold(f32::NEG_INFINITY, f32::max);
                }
            }
            // Pass 2: weights and values, segment by segment (token order within each row).
            let mut sum = vec![0f32; n * heads];
            for (s, users) in users.iter().enumerate() {
                let slice = slices[s];
                for u in users {
                    let local = u.row - first;
                    let len = row_len(local);
                    for t in 0..u.visible {
                        for g in 0..kv_heads {
                            T::widen(&slice.v[(t * kv_heads + g) * hd..][..hd], &mut wide);
                            for h in g * group..(g + 1) * group {
                                let i = local * heads + h;
                                let at = score_start[local] + h * len + u.offset + t;
                                let p = (scores[at] - max[i]).exp();
                                sum[i] += p;
                                axpy(p, &wide, &mut out[local * width + h * hd..][..hd]);
                            }
                        }
                    }
                }
            }
            for (i, acc) in out.chunks_exact_mut(hd).enumerate().take(n * heads) {
                let inv = 1.0 / sum[i];
                acc.iter_mut().for_each(|a| *a *= inv);
            }
        });
    out
}

/// Dot product in eight lanes (vectorizes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `acc += p * v`.
fn axpy(p: f32, v: &[f32], acc: &mut [f32]) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += p * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain softmax attention of one query head over concatenated keys.
    fn reference(q: &[f32], k: &[Vec<f32>], v: &[Vec<f32>]) -> Vec<f32> {
        let scale = 1.0 / (q.len() as f32).sqrt();
        let s: Vec<f32> = k.iter().map(|k| dot(q, k) * scale).collect();
        let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f32 = e.iter().sum();
        let mut out = vec![0f32; q.len()];
        for (p, v) in e.iter().zip(v) {
            axpy(p / z, v, &mut out);
        }
        out
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    #[test]
    fn merged_segments_equal_one_softmax_over_their_concatenation() {
        // 2 query heads over 1 kv head (GQA), head_dim 4; a shared 3-token segment, then own
        // 2-token segments of which row 1 sees only the first token.
        let shape = Heads {
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
        };
        let shared = (pseudo(12, 1), pseudo(12, 2));
        let own = (pseudo(8, 3), pseudo(8, 4));
        let q = pseudo(16, 5);
        let slices = [
            KvSlice {
                k: &shared.0,
                v: &shared.1,
            },
            KvSlice {
                k: &own.0,
                v: &own.1,
            },
        ];
        let parts = vec![vec![(0, 3), (1, 2)], vec![(0, 3), (1, 1)]];
        let out = tree_attention(&q, shape, &slices, &parts);
        let tokens = |(k, v): &(Vec<f32>, Vec<f32>), n: usize| -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
            (
                k.chunks(4).take(n).map(<[f32]>::to_vec).collect(),
                v.chunks(4).take(n).map(<[f32]>::to_vec).collect(),
            )
        };
        for (row, own_visible) in [(0usize, 2usize), (1, 1)] {
            let (mut k, mut v) = tokens(&shared, 3);
            let (k2, v2) = tokens(&own, own_visible);
            k.extend(k2);
            v.extend(v2);
            for h in 0..2 {
                let q = &q[row * 8 + h * 4..][..4];
                let want = reference(q, &k, &v);
                let got = &out[row * 8 + h * 4..][..4];
                for (a, b) in want.iter().zip(got) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "row {row} head {h}: {want:?} vs {got:?}"
                    );
                }
            }
        }
        // Bit-identical to the same keys as one segment.
        let joined = (
            [&shared.0[..], &own.0[..]].concat(),
            [&shared.1[..], &own.1[..]].concat(),
        );
        let one = [KvSlice {
            k: &joined.0,
            v: &joined.1,
        }];
        let single = tree_attention(&q, shape, &one, &vec![vec![(0, 5)], vec![(0, 4)]]);
        assert_eq!(out, single);
    }
}
