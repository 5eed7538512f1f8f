//! Tests of the bounded GGUF header reader: real files from candle's writer pass; crafted
//! headers whose sizes exceed the file are errors naming the field, and nothing is allocated
//! from the claimed sizes.

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::*;

/// A file in a fresh temporary folder, removed with it.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ets-gguf-{}-{}-{name}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        Self { dir, path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A v3 header with one metadata key whose claimed length is `key_len` (the 52-byte crafted
/// file of the hardening report when `key_len` is 2^40).
fn crafted_key_length(key_len: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    b.extend_from_slice(&key_len.to_le_bytes());
    b.extend_from_slice(b"general.archite");
    b.resize(52, b'x');
    b
}

fn header_with_entry(key: &str, value_type: u32, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&value_type.to_le_bytes());
    b.extend_from_slice(value);
    b
}

fn malformed_field(e: Error) -> String {
    match e {
        Error::Malformed { field, .. } => field,
        other => panic!("expected a malformed-file error, got {other}"),
    }
}

fn written_by_candle() -> Vec<u8> {
    let weights = Tensor::arange(0f32, 64.0, &Device::Cpu)
        .unwrap()
        .reshape((2, 32))
        .unwrap();
    let q = QTensor::quantize(&weights, GgmlDType::Q8_0).unwrap();
    let arch = gguf_file::Value::String("llama".into());
    let layers = gguf_file::Value::U32(30);
    let tokens = gguf_file::Value::Array(vec![
        gguf_file::Value::String("a".into()),
        gguf_file::Value::String("b".into()),
    ]);
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(
        &mut out,
        &[
            ("general.architecture", &arch),
            ("llama.block_count", &layers),
            ("tokenizer.ggml.tokens", &tokens),
        ],
        &[("blk.0.w", &q)],
    )
    .unwrap();
    out.into_inner()
}

#[test]
fn a_file_written_by_candle_passes_and_reads_back() {
    let file = TempFile::new("ok.gguf", &written_by_candle());
    let header = GgufHeader::read(&file.path).unwrap();
    assert_eq!(header.architecture().unwrap(), "llama");
    assert_eq!(header.uint("llama.block_count"), Some(30));
    assert_eq!(
        header.metadata.get("tokenizer.ggml.tokens"),
        Some(&GgufValue::Array { len: 2 })
    );
    let t = &header.tensors["blk.0.w"];
    assert_eq!((t.dims.clone(), t.ggml_type), (vec![32, 2], 8));
}

#[test]
fn a_key_length_of_2_pow_40_is_an_error_naming_the_key() {
    let bytes = crafted_key_length(1 << 40);
    assert_eq!(bytes.len(), 52);
    let file = TempFile::new("crafted.gguf", &bytes);
    let e = GgufHeader::read(&file.path).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("crafted.gguf"), "{text}");
    assert!(text.contains("1099511627776"), "{text}");
    assert_eq!(malformed_field(e), "metadata key #0");
}

#[test]
fn a_string_value_longer_than_the_file_is_refused() {
    let mut value = (1u64 << 33).to_le_bytes().to_vec();
    value.extend_from_slice(b"llama");
    let file = TempFile::new(
        "s.gguf",
        &header_with_entry("general.architecture", 8, &value),
    );
    let e = GgufHeader::read(&file.path).unwrap_err();
    assert!(e.to_string().contains("bytes left in the file"), "{e}");
    assert_eq!(malformed_field(e), "general.architecture");
}

#[test]
fn an_array_claiming_more_items_than_fit_is_refused() {
    let mut value = 0u32.to_le_bytes().to_vec(); // u8 items
    value.extend_from_slice(&(1u64 << 40).to_le_bytes());
    value.extend_from_slice(&[1, 2, 3]);
    let file = TempFile::new(
        "a.gguf",
        &header_with_entry("tokenizer.ggml.scores", 9, &value),
    );
    let e = GgufHeader::read(&file.path).unwrap_err();
    assert_eq!(malformed_field(e), "tokenizer.ggml.scores");
}

#[test]
fn counts_that_cannot_fit_are_refused_before_reading_entries() {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    let file = TempFile::new("t.gguf", &b);
    assert_eq!(
        malformed_field(GgufHeader::read(&file.path).unwrap_err()),
        "tensor count"
    );
}

/// Rewrites the first tensor's dimension count (it follows the name `blk.0.w`).
fn with_first_tensor_dims(bytes: &[u8], n_dims: u32, dims: &[u64]) -> Vec<u8> {
    let name = b"blk.0.w";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor name")
        + name.len();
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&n_dims.to_le_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    // Skip the original two dimensions.
    out.extend_from_slice(&bytes[at + 4 + 16..]);
    out
}

#[test]
fn tensors_with_too_many_dims_or_data_past_the_end_are_refused() {
    let good = written_by_candle();
    let many_dims = with_first_tensor_dims(&good, 1 << 30, &[32, 2]);
    let file = TempFile::new("d.gguf", &many_dims);
    let field = malformed_field(GgufHeader::read(&file.path).unwrap_err());
    assert_eq!(field, "tensor blk.0.w dimension count");

    let huge = with_first_tensor_dims(&good, 2, &[32, 1 << 40]);
    let file = TempFile::new("h.gguf", &huge);
    let e = GgufHeader::read(&file.path).unwrap_err();
    assert!(e.to_string().contains("runs past"), "{e}");

    let overflow = with_first_tensor_dims(&good, 2, &[1 << 40, 1 << 40]);
    let file = TempFile::new("o.gguf", &overflow);
    let e = GgufHeader::read(&file.path).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
}

#[test]
fn every_truncation_of_a_good_file_is_an_error_not_a_panic() {
    let good = written_by_candle();
    // The tensor's 68 bytes are padded to 96: cuts inside the padding still hold every byte.
    let data_end = good.len() - (96 - 68);
    for len in 0..data_end {
        let file = TempFile::new("cut.gguf", &good[..len]);
        assert!(
            GgufHeader::read(&file.path).is_err(),
            "a file cut at {len} bytes passed"
        );
    }
}

#[test]
fn a_file_that_is_not_gguf_names_the_magic() {
    let file = TempFile::new("x.gguf", b"{\"not\": \"gguf\"}");
    assert_eq!(
        malformed_field(GgufHeader::read(&file.path).unwrap_err()),
        "magic"
    );
}

#[test]
fn read_from_bytes_agrees_with_read_from_a_file() {
    let good = written_by_candle();
    let file = TempFile::new("same.gguf", &good);
    let from_file = GgufHeader::read(&file.path).unwrap();
    let from_bytes = GgufHeader::read_from(&good[..], good.len() as u64, &file.path).unwrap();
    assert_eq!(from_bytes.metadata, from_file.metadata);
    assert_eq!(from_bytes.tensors, from_file.tensors);
    let e = GgufHeader::read_from(&good[..40], 40, Path::new("cut.gguf")).unwrap_err();
    assert!(e.to_string().contains("cut.gguf"), "{e}");
    screen_bytes(&good).unwrap();
}

/// Regression: a key `general.alignment\0` of 0 passed (this reader saw another key and took
/// the default alignment) and candle, which drops trailing NULs, then divided by zero.
#[test]
fn a_nul_terminated_alignment_of_zero_is_refused_before_candle_divides_by_it() {
    let bytes = header_with_entry("general.alignment\0", 4, &0u32.to_le_bytes());
    assert_eq!(
        malformed_field(screen_bytes(&bytes).unwrap_err()),
        "general.alignment"
    );
    let bytes = header_with_entry(
        "general.architecture\0\0",
        8,
        b"\x07\0\0\0\0\0\0\0llama\0\0",
    );
    let header = screen_bytes(&bytes).unwrap();
    assert_eq!(header.architecture().unwrap(), "llama");
}

/// Regression: dimensions `[0, 2^40, 2^40]` have 0 elements in this reader's order, but candle
/// multiplies them innermost last and overflowed (a panic with overflow checks on).
#[test]
fn a_zero_dimension_does_not_hide_an_overflow_of_the_others() {
    let good = written_by_candle();
    let hidden = with_first_tensor_dims(&good, 3, &[0, 1 << 40, 1 << 40]);
    let e = screen_bytes(&hidden).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    let empty = with_first_tensor_dims(&good, 3, &[0, 32, 2]);
    screen_bytes(&empty).unwrap();
}

/// Corpus replay: every seed of the `gguf_header` fuzz target (`fuzz/corpus/`) through the fuzz
/// body ([`screen_bytes`]: the header check, then candle's reader when it passes), as CI's
/// `cargo test` runs it; no panic, and the crafted 52-byte file is refused naming its field.
#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/gguf_header");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "{} seeds in {}",
        files.len(),
        dir.display()
    );
    let mut accepted = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        if screen_bytes(&bytes).is_ok() {
            accepted += 1;
        }
    }
    assert!(
        accepted >= 5,
        "only {accepted} seeds passed the header check"
    );
    let crafted = std::fs::read(dir.join("crafted-key-2p40.gguf")).unwrap();
    assert_eq!(crafted, crafted_key_length_as_in_hostile_rs());
    assert_eq!(
        malformed_field(screen_bytes(&crafted).unwrap_err()),
        "metadata key #0"
    );
}

/// `crafted_gguf()` of `tests/tests/daemon/hostile.rs`, byte for byte.
fn crafted_key_length_as_in_hostile_rs() -> Vec<u8> {
    let mut b = crafted_key_length(1 << 40);
    b[32..].fill(b'a');
    b
}
