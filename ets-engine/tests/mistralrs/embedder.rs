//! The BERT step embedder.

use ets_core::Embedder;
use ets_engine::BertEmbedder;

use crate::support::{exclusive, minilm_dir};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn vectors_are_unit_norm_and_similar_texts_are_closer() {
    let _g = exclusive(); // keeps its allocations out of the RSS test's window
    let mut e = BertEmbedder::load(&minilm_dir()).unwrap();
    let texts = [
        "There are 3 boxes with 4 apples each, so there are 12 apples.",
        "Each of the 3 boxes holds 4 apples, which makes 12 apples in total.",
        "The train leaves the station at noon and arrives in Paris.",
        "",
    ];
    let v = e.embed(&texts).unwrap();
    assert_eq!(v.len(), 4);
    for x in &v {
        assert_eq!(x.len(), 384);
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let close = cosine(&v[0], &v[1]);
    let far = cosine(&v[0], &v[2]);
    assert!(close > far + 0.2, "similar {close} vs dissimilar {far}");
    // Batching does not change a vector.
    let alone = e.embed(&texts[..1]).unwrap();
    let diff = alone[0]
        .iter()
        .zip(&v[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "{diff}");
}
