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
//!
//! Work is split into row chunks of about equal context (a causal prefill's last rows see the
//! whole prompt, its first rows almost nothing), a few per thread. Within a chunk, each
//! segment is widened from its stored precision to f32 a block of tokens at a time and used
//! by every row of the chunk that sees those tokens, and the arithmetic runs on those blocks
//! in [`super::attention_math`] (all query heads of a key/value head at once, eight lanes per
//! vector).

use rayon::prelude::*;

use super::attention_math as math;
use super::kv::KvElem;

/// K and V of one segment, token-major (`[tokens, kv_heads, head_dim]`), in the model's
/// stored precision `T` (widened to f32 a block of tokens at a time).
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

/// Tokens of a segment widened to f32 at a time, then used by every row of a chunk that sees
/// them (a prompt shared by all rows is widened once per chunk, not once per row).
const TOKEN_BLOCK: usize = 16;
// `attention_math` computes scores 16 tokens at a time.
const _: () = assert!(TOKEN_BLOCK % 16 == 0);

/// Row chunks per thread: a few, so that rows of unequal context (a causal prefill's first
/// and last rows differ by the whole prompt) even out.
const CHUNKS_PER_THREAD: usize = 4;

/// Attention output `[rows, heads, head_dim]` for queries `q` (same layout, RoPE applied).
pub(crate) fn tree_attention<T: KvElem>(
    q: &[f32],
    shape: Heads,
    slices: &[KvSlice<'_, T>],
    parts: &RowParts,
) -> Vec<f32> {
    let width = shape.heads * shape.head_dim;
    let rows = parts.len();
    let mut out = vec![0f32; rows * width];
    if rows == 0 {
        return out;
    }
    for row in parts {
        assert!(
            row.windows(2).all(|w| w[0].0 < w[1].0),
            "parts out of order"
        );
    }
    let threads = rayon::current_num_threads().max(1);
    let bounds = balanced_chunks(parts, threads * CHUNKS_PER_THREAD);
    let mut chunks = Vec::with_capacity(bounds.len());
    let mut rest = &mut out[..];
    for &(first, last) in &bounds {
        let (chunk, tail) = rest.split_at_mut((last - first) * width);
        chunks.push((first, chunk));
        rest = tail;
    }
    chunks.into_par_iter().for_each(|(first, out)| {
        attend_rows(
            q,
            shape,
            slices,
            &parts[first..first + out.len() / width],
            first,
            out,
        )
    });
    out
}

/// Contiguous row ranges of about equal work (visible tokens), at most `max_chunks` of them.
fn balanced_chunks(parts: &RowParts, max_chunks: usize) -> Vec<(usize, usize)> {
    let cost = |row: &Vec<(usize, usize)>| 1 + row.iter().map(|&(_, v)| v).sum::<usize>();
    let total: usize = parts.iter().map(cost).sum();
    let target = total.div_ceil(max_chunks.max(1));
    let mut bounds = Vec::new();
    let (mut first, mut acc) = (0, 0);
    for (i, row) in parts.iter().enumerate() {
        acc += cost(row);
        if acc >= target {
            bounds.push((first, i + 1));
            (first, acc) = (i + 1, 0);
        }
    }
    if first < parts.len() {
        bounds.push((first, parts.len()));
    }
    bounds
}

/// Attention of rows `first..first + parts.len()` into `out` (their `[rows, heads, head_dim]`).
fn attend_rows<T: KvElem>(
    q: &[f32],
    shape: Heads,
    slices: &[KvSlice<'_, T>],
    parts: &[Vec<(usize, usize)>],
    first: usize,
    out: &mut [f32],
) {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    let width = heads * hd;
    let n = parts.len();
    // Users of each slice among these rows, and each row's score buffer.
    let mut users: Vec<Vec<Use>> = (0..slices.len()).map(|_| Vec::new()).collect();
    let mut score_start = Vec::with_capacity(n + 1);
    let mut total = 0;
    for (local, row_parts) in parts.iter().enumerate() {
        score_start.push(total);
        let mut offset = 0;
        for &(s, visible) in row_parts {
            if visible > 0 {
                users[s].push(Use {
                    row: first + local,
                    visible,
                    offset,
                });
                offset += visible;
            }
        }
        total += offset * heads;
    }
    score_start.push(total);
    let mut scores = vec![0f32; total];
    let row_len = |local: usize| (score_start[local + 1] - score_start[local]) / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let group = heads / kv_heads;
    let token_width = kv_heads * hd;
    // A block of key or value tokens widened to f32: keys transposed (`[kv head][dim][token]`,
    // so eight tokens' scores come out of one vector), values as stored.
    // Where a use's scores for KV head `g`'s first query head start at token `t0` of its
    // slice: (the row's index in this chunk, its score count per head, the offset).
    let place = |u: &Use, g: usize, t0: usize| {
        let local = u.row - first;
        let len = row_len(local);
        (
            local,
            len,
            score_start[local] + g * group * len + u.offset + t0,
        )
    };
    let mut wide = vec![0f32; TOKEN_BLOCK * token_width];
    let mut stored = vec![0f32; TOKEN_BLOCK * token_width];
    // Pass 1: scores, segment by segment, a block of tokens at a time.
    for (s, users) in users.iter().enumerate() {
        let keys = slices[s].k;
        for_blocks(users, |t0, t1| {
            let stored = &mut stored[..(t1 - t0) * token_width];
            T::widen(&keys[t0 * token_width..t1 * token_width], stored);
            math::transpose_block(stored, kv_heads, hd, TOKEN_BLOCK, &mut wide);
            for_group_uses(users, t0, t1, kv_heads, |u, g, seen| {
                let (_, len, at) = place(u, g, t0);
                let h = g * group;
                math::group_scores(
                    &q[u.row * width + h * hd..][..group * hd],
                    group,
                    &wide[g * hd * TOKEN_BLOCK..][..hd * TOKEN_BLOCK],
                    TOKEN_BLOCK,
                    scale,
                    seen,
                    &mut scores[at..],
                    len,
                );
            });
        });
    }
    // Softmax weights, unnormalised: `exp(score − max)` over all of a (row, head)'s scores
    // (laid out in token order, whatever the segments), and their sum.
    let mut sum = vec![0f32; n * heads];
    for local in 0..n {
        let len = row_len(local);
        for h in 0..heads {
            let start = score_start[local] + h * len;
            sum[local * heads + h] = math::exp_shifted_in_place(&mut scores[start..start + len]);
        }
    }
    // Pass 2: weighted values, segment by segment (token order within each row).
    for (s, users) in users.iter().enumerate() {
        let values = slices[s].v;
        for_blocks(users, |t0, t1| {
            let wide = &mut wide[..(t1 - t0) * token_width];
            T::widen(&values[t0 * token_width..t1 * token_width], wide);
            for_group_uses(users, t0, t1, kv_heads, |u, g, seen| {
                let (local, len, at) = place(u, g, t0);
                let h = g * group;
                math::group_add_weighted(
                    &scores[at..],
                    len,
                    seen,
                    group,
                    &wide[g * hd..],
                    token_width,
                    &mut out[local * width + h * hd..][..group * hd],
                );
            });
        });
    }
    for (i, acc) in out.chunks_exact_mut(hd).enumerate().take(n * heads) {
        let inv = 1.0 / sum[i];
        acc.iter_mut().for_each(|a| *a *= inv);
    }
}

/// Calls `f(use, kv_head, seen)` for every use of a slice that sees tokens of the block
/// `[t0, t1)` and every key/value head, `seen` the block's tokens that use sees.
fn for_group_uses(
    users: &[Use],
    t0: usize,
    t1: usize,
    kv_heads: usize,
    mut f: impl FnMut(&Use, usize, usize),
) {
    for u in users.iter().filter(|u| u.visible > t0) {
        let seen = u.visible.min(t1) - t0;
        for g in 0..kv_heads {
            f(u, g, seen);
        }
    }
}

/// Calls `f(t0, t1)` for the token blocks `[t0, t1)` that cover the most any user sees.
fn for_blocks(users: &[Use], mut f: impl FnMut(usize, usize)) {
    let seen = users.iter().map(|u| u.visible).max().unwrap_or(0);
    for t0 in (0..seen).step_by(TOKEN_BLOCK) {
        f(t0, (t0 + TOKEN_BLOCK).min(seen));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `tree_attention` alone on SmolLM2-135M's heads (9 over 3, 64 dims, f16 K/V): a causal
    /// prefill of 291 tokens, and 16 rows sharing that prompt plus 32 own tokens each.
    #[test]
    #[ignore = "timing; run in release"]
    fn bench_attention() {
        use half::f16;
        let shape = Heads {
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
        };
        let kv = |tokens: usize, seed: u32| -> Vec<f16> {
            pseudo(tokens * 3 * 64, seed)
                .into_iter()
                .map(|x| f16::from_f32(x / 4.0))
                .collect()
        };
        let prompt = (kv(291, 1), kv(291, 2));
        let own: Vec<(Vec<f16>, Vec<f16>)> =
            (0..16).map(|i| (kv(33, 10 + i), kv(33, 40 + i))).collect();
        let mut slices = vec![KvSlice {
            k: &prompt.0[..],
            v: &prompt.1[..],
        }];
        slices.extend(own.iter().map(|(k, v)| KvSlice {
            k: &k[..],
            v: &v[..],
        }));
        let prefill: RowParts = (0..291).map(|r| vec![(0, r + 1)]).collect();
        let decode: RowParts = (0..16).map(|i| vec![(0, 291), (1 + i, 33)]).collect();
        for (name, parts) in [("prefill 291", &prefill), ("decode 16 rows", &decode)] {
            let q = pseudo(parts.len() * 9 * 64, 7);
            let mut best = f64::INFINITY;
            let reps: usize = std::env::var("ETS_BENCH_REPS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(30);
            for _ in 0..reps {
                let t = std::time::Instant::now();
                std::hint::black_box(tree_attention(&q, shape, &slices, parts));
                best = best.min(t.elapsed().as_secs_f64());
            }
            eprintln!("{name}: {:.3} ms per layer", best * 1e3);
        }
    }
}
