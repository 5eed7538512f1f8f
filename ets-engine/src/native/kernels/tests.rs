//! The packed Q8_0 GEMM against a plain f64 reference (random shapes, ragged tiles), against
//! candle's quantizer and `QMatMul` (random and real SmolLM2 weights), and batch independence.
//! `bench_*` (ignored) time it: run them in release, e.g.
//! `cargo test --release --target-dir target-kernel -p ets-engine --no-default-features
//! --features native --lib -- --ignored --nocapture bench_`.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use super::q8_gemm::{self, Kernel, PackedQ8, QuantizedRows, BLOCK_BYTES, QK};
use super::{Choice, Projection};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1), with an occasional outlier (×8) and exact zero block values.
    fn value(&mut self) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        match self.next() % 64 {
            0 => u * 8.0,
            1 => 0.0,
            _ => u,
        }
    }

    fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.value()).collect()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn quantized(values: &[f32], n: usize, k: usize) -> QTensor {
    let t = Tensor::from_slice(values, (n, k), &Device::Cpu).unwrap();
    QTensor::quantize(&t, GgmlDType::Q8_0).unwrap()
}

fn packed(q: &QTensor) -> PackedQ8 {
    let (n, k) = q.shape().dims2().unwrap();
    let data = q.data().unwrap();
    PackedQ8::from_gguf_parts(k, &[(n, &data)]).unwrap()
}

/// f64 reference on the same quantized operands: `(Σ dot_int · dw·dx, Σ |terms|)`.
fn reference(q: &QTensor, xq: &QuantizedRows) -> Vec<(f64, f64)> {
    let (n, k) = q.shape().dims2().unwrap();
    let data = q.data().unwrap();
    let kb = k / QK;
    let mut out = Vec::with_capacity(xq.m * n);
    for c in 0..xq.m {
        for j in 0..n {
            let (mut sum, mut abs) = (0f64, 0f64);
            for b in 0..kb {
                let block = &data[(j * kb + b) * BLOCK_BYTES..][..BLOCK_BYTES];
                let dw = half::f16::from_le_bytes([block[0], block[1]]).to_f64();
                let dx = xq.d[c * kb + b] as f64;
                let xs = &xq.qs[(c * kb + b) * QK..][..QK];
                for (&w, &x) in block[2..].iter().zip(xs) {
                    let t = (w as i8) as f64 * x as f64 * dw * dx;
                    sum += t;
                    abs += t.abs();
                }
            }
            out.push((sum, abs));
        }
    }
    out
}

fn kernels() -> Vec<Kernel> {
    let mut ks = vec![Kernel::Scalar];
    if Kernel::detect() != Kernel::Scalar {
        ks.push(Kernel::detect());
    }
    ks
}

#[test]
fn quantize_matches_candle() {
    let mut rng = Rng(7);
    for &(m, k) in &[(1, 32), (3, 96), (5, 576)] {
        let x = rng.values(m * k);
        let ours = QuantizedRows::quantize(&x, k);
        let theirs = quantized(&x, m, k).data().unwrap().into_owned();
        for (i, block) in theirs.chunks_exact(BLOCK_BYTES).enumerate() {
            let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            assert_eq!(ours.d[i].to_bits(), d.to_bits(), "scale of block {i}");
            let qs: Vec<i8> = block[2..].iter().map(|&b| b as i8).collect();
            assert_eq!(
                &ours.qs[i * QK..(i + 1) * QK],
                &qs[..],
                "quants of block {i}"
            );
        }
    }
}

#[test]
fn random_shapes_match_reference() {
    let mut rng = Rng(42);
    for case in 0..40 {
        // Ragged on both sides: n and m are rarely multiples of the tile.
        let (n, m, kb) = (1 + rng.below(23), 1 + rng.below(19), 1 + rng.below(9));
        let k = kb * QK;
        let q = quantized(&rng.values(n * k), n, k);
        let w = packed(&q);
        let x = rng.values(m * k);
        let xq = QuantizedRows::quantize(&x, k);
        let want = reference(&q, &xq);
        for kernel in kernels() {
            let got = q8_gemm::matmul(&w, &x, kernel);
            for (i, (&g, &(r, abs))) in got.iter().zip(&want).enumerate() {
                let err = (g as f64 - r).abs();
                assert!(
                    err <= 1e-5 * abs + 1e-7,
                    "case {case} {kernel:?} n={n} m={m} k={k} [{i}]: {g} vs {r} (Σ|t| {abs})"
                );
            }
        }
    }
}

#[test]
fn rows_do_not_depend_on_the_batch() {
    let mut rng = Rng(3);
    let (n, k, m) = (37, 5 * QK, 11);
    let w = packed(&quantized(&rng.values(n * k), n, k));
    let x = rng.values(m * k);
    for kernel in kernels() {
        let all = q8_gemm::matmul(&w, &x, kernel);
        for c in 0..m {
            let one = q8_gemm::matmul(&w, &x[c * k..(c + 1) * k], kernel);
            assert_eq!(one, all[c * n..(c + 1) * n], "{kernel:?} row {c}");
        }
    }
}

/// The SIMD kernel reproduces candle's `QMatMul` bit for bit (same lanes, same order); the
/// scalar loop within f32 summation-order error.
fn check_against_candle(q: QTensor, x: &[f32], label: &str) {
    let (n, k) = q.shape().dims2().unwrap();
    let m = x.len() / k;
    let xt = Tensor::from_slice(x, (m, k), &Device::Cpu).unwrap();
    let q = std::sync::Arc::new(q);
    let theirs: Vec<f32> = QMatMul::QTensor(q.clone())
        .forward(&xt)
        .and_then(|y| y.flatten_all())
        .and_then(|y| y.to_vec1())
        .unwrap();
    let scale = theirs.iter().fold(0f32, |a, &y| a.max(y.abs()));
    for kernel in kernels() {
        let proj =
            Projection::new(vec![QMatMul::QTensor(q.clone())], Choice::Packed(kernel)).unwrap();
        assert!(matches!(proj, Projection::Packed { .. }), "{label}: packed");
        let ours: Vec<f32> = proj
            .forward_one(&xt)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1())
            .unwrap();
        let max = ours
            .iter()
            .zip(&theirs)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        eprintln!("{label} n={n} k={k} m={m} {kernel:?}: max |Δ| {max:e} (max |y| {scale})");
        if kernel == Kernel::Scalar {
            assert!(max <= 1e-4 * scale, "{label} {kernel:?}: {max} of {scale}");
        } else {
            assert_eq!(
                ours, theirs,
                "{label} {kernel:?}: not bit-identical to candle"
            );
        }
    }
}

#[test]
fn random_weights_match_candle_qmatmul() {
    let mut rng = Rng(11);
    for &(n, k, m) in &[(5, 64, 1), (37, 96, 7), (130, 576, 16), (64, 1536, 33)] {
        let q = quantized(&rng.values(n * k), n, k);
        check_against_candle(q, &rng.values(m * k), "random");
    }
}

#[test]
fn stacked_parts_split_like_separate_products() {
    let mut rng = Rng(5);
    let k = 3 * QK;
    let parts: Vec<QMatMul> = [7usize, 4, 9]
        .iter()
        .map(|&n| QMatMul::QTensor(std::sync::Arc::new(quantized(&rng.values(n * k), n, k))))
        .collect();
    let x = Tensor::from_vec(rng.values(5 * k), (5, k), &Device::Cpu).unwrap();
    for kernel in kernels() {
        let stacked = Projection::new(parts.clone(), Choice::Packed(kernel)).unwrap();
        let ys = stacked.forward(&x).unwrap();
        for (p, y) in parts.iter().zip(ys) {
            let one = Projection::new(vec![p.clone()], Choice::Packed(kernel)).unwrap();
            let want = one.forward_one(&x).unwrap();
            assert_eq!(
                y.to_vec2::<f32>().unwrap(),
                want.to_vec2::<f32>().unwrap(),
                "{kernel:?}"
            );
        }
    }
}

#[test]
fn gated_projection_matches_candle_silu_times_up() {
    let mut rng = Rng(17);
    let k = 2 * QK;
    // 3 rows run on this thread, 64 rows × 600 wide in parallel chunks.
    for (rows, width) in [(3usize, 40usize), (64, 600)] {
        let parts: Vec<QMatMul> = (0..2)
            .map(|_| {
                let w: Vec<f32> = rng.values(width * k).iter().map(|v| v * 4.0).collect();
                QMatMul::QTensor(std::sync::Arc::new(quantized(&w, width, k)))
            })
            .collect();
        let x = Tensor::from_vec(rng.values(rows * k), (rows, k), &Device::Cpu).unwrap();
        for kernel in kernels() {
            let gated = Projection::new(parts.clone(), Choice::Packed(kernel)).unwrap();
            let got = gated.forward_gated(&x).unwrap().to_vec2::<f32>().unwrap();
            let ys = gated.forward(&x).unwrap();
            let want = (candle_nn::ops::silu(&ys[0]).unwrap() * &ys[1])
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let mut checked = 0;
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!(
                    (g - w).abs() <= 2e-6 * w.abs().max(1.0),
                    "{kernel:?} rows {rows}: {g} vs {w}"
                );
                checked += 1;
            }
            assert_eq!(checked, rows * width);
        }
    }
}

/// The small model's GGUF, pulled into the default store as the native tests do.
pub(super) fn smollm2() -> std::path::PathBuf {
    use crate::store::{Store, SMOLLM2_135M};
    let store = Store::open_default().unwrap();
    store.ensure_pulled(&[SMOLLM2_135M]).unwrap();
    match store.model_files(SMOLLM2_135M).unwrap() {
        crate::ModelFiles::Gguf { dir, file } => dir.join(file),
        other => panic!("not a GGUF: {other:?}"),
    }
}

fn real_weight(name: &str) -> QTensor {
    let path = smollm2();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    content.tensor(&mut file, name, &Device::Cpu).unwrap()
}

#[test]
fn real_smollm2_weights_match_candle_qmatmul() {
    let mut rng = Rng(9);
    for (name, m) in [
        ("blk.0.attn_q.weight", 1),
        ("blk.3.ffn_gate.weight", 16),
        ("blk.7.ffn_down.weight", 21),
        ("token_embd.weight", 3),
    ] {
        let q = real_weight(name);
        assert_eq!(q.dtype(), GgmlDType::Q8_0, "{name}");
        let k = q.shape().dims2().unwrap().1;
        check_against_candle(q, &rng.values(m * k), name);
    }
}

#[path = "bench.rs"]
mod bench;
