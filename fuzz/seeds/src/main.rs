//! Writes the seed corpus of the fuzz targets: `cargo run -p ets-fuzz-seeds` in `fuzz/`
//! (re)writes `fuzz/corpus/frame_decode/` and `fuzz/corpus/gguf_header/` (a few dozen small
//! named files, committed). Seeds are valid inputs of every kind plus the hostile and truncated
//! ones the fuzzer should start from; libFuzzer mutates from there.
//!
//! Frames are encoded with the product's own codec; GGUF files are written byte by byte here
//! (no candle needed), in versions 1 to 3, with every metadata value type and a few tensors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ets_core::answer::{StepAggregate, VoteRule};
use ets_core::config::Method;
use ets_core::protocol::{
    encode_frame, EngineChoice, ModelChoice, ModelRole, RemoteModelSpec, Request, SolveRequest,
    PROTOCOL_VERSION,
};

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus"));
    let mut n = 0;
    for (dir, seeds) in [
        ("frame_decode", frame_seeds()),
        ("gguf_header", gguf_seeds()),
    ] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).expect("seed file");
            n += 1;
        }
    }
    println!("wrote {n} seeds under {}", root.display());
}

fn frame(request: &Request) -> Vec<u8> {
    encode_frame(request).expect("seed requests encode")
}

fn solve(edit: impl FnOnce(&mut SolveRequest)) -> Request {
    let mut request = SolveRequest::new("What is 6 * 7?");
    edit(&mut request);
    Request::Solve(Box::new(request))
}

fn hello() -> Request {
    Request::Hello {
        protocol: PROTOCOL_VERSION,
        client: "ets 0.1.0".into(),
    }
}

/// Valid frames of every request kind, requests the checks refuse, streams and truncations.
fn frame_seeds() -> Vec<(String, Vec<u8>)> {
    let full = solve(|r| {
        r.tag = Some("line-7".into());
        r.deadline_ms = Some(60_000);
        r.stream_events = false;
        r.models = ModelChoice {
            policy: Some("qwen2.5-0.5b".into()),
            prm: Some("/models/prm.gguf".into()),
            prm_profile: Some("math-shepherd".into()),
            embedder: Some("minilm".into()),
            engine: Some(EngineChoice::Native),
        };
        let c = &mut r.config;
        c.method = Method::Rebase;
        c.width = 64;
        c.lambda_s = Some(1.4);
        c.sampling.top_k = Some(40);
        c.sampling.top_p = 0.95;
        c.retention_time_limit = Some(Duration::from_millis(250));
        c.vote = VoteRule::BestOf(StepAggregate::Min);
        c.stop_when_decided = true;
        c.answer_markers.push("Final answer:".into());
    });
    let mut named: Vec<(&str, Request)> = vec![
        ("hello", hello()),
        (
            "hello-old-version",
            Request::Hello {
                protocol: 2,
                client: "ets 0.0.9".into(),
            },
        ),
        ("solve-default", solve(|_| {})),
        ("solve-full", full.clone()),
        ("cancel", Request::Cancel { job: 7 }),
        ("list-jobs", Request::ListJobs),
        ("status", Request::Status),
        ("metrics", Request::Metrics),
        (
            "load-model",
            Request::LoadModel {
                model: "qwen2.5-0.5b".into(),
                role: ModelRole::Prm,
                keep_alive_secs: Some(-1),
                engine: Some(EngineChoice::MistralRs),
            },
        ),
        (
            "unload-model",
            Request::UnloadModel {
                model: "minilm".into(),
            },
        ),
        (
            "pin-model",
            Request::PinModel {
                model: "minilm".into(),
                pinned: true,
            },
        ),
        (
            "pull",
            Request::Pull {
                alias: "qwen2.5-0.5b".into(),
            },
        ),
        ("list-models", Request::ListModels),
        (
            "add-remote",
            Request::AddRemoteModel(RemoteModelSpec {
                name: "big".into(),
                endpoints: vec!["http://127.0.0.1:8080".into(), "https://gpu:8000".into()],
                served_name: Some("qwen".into()),
                role: Some(ModelRole::Policy),
                prm_profile: None,
                dialect: Some("vllm".into()),
                timeout_secs: Some(120),
            }),
        ),
        (
            "add-remote-bad-url",
            Request::AddRemoteModel(RemoteModelSpec {
                name: "x".into(),
                endpoints: vec!["ftp://x".into()],
                ..RemoteModelSpec::default()
            }),
        ),
        ("shutdown", Request::Shutdown),
    ];
    for method in Method::ALL {
        let name = match method {
            Method::Ets => "solve-ets-majority",
            Method::Rebase => "solve-rebase",
            Method::Beam => "solve-beam",
            Method::Dvts => "solve-dvts",
            Method::BestOfN => "solve-bon",
        };
        named.push((
            name,
            solve(|r| {
                r.config.method = method;
                r.config.vote = VoteRule::Majority;
            }),
        ));
    }
    named.extend([
        ("refused-width", solve(|r| r.config.width = 1 << 20)),
        ("refused-zero-width", solve(|r| r.config.width = 0)),
        (
            "refused-nan-top-p",
            solve(|r| r.config.sampling.top_p = f64::NAN),
        ),
        ("refused-empty-problem", solve(|r| r.problem = " \n".into())),
        ("refused-zero-deadline", solve(|r| r.deadline_ms = Some(0))),
        (
            "refused-empty-marker",
            solve(|r| r.config.answer_markers.push(String::new())),
        ),
        (
            "solve-kv-limit-tokens",
            solve(|r| {
                r.config.kv_limit = Some(1500);
                r.config.kv_cost = ets_core::KvCost::Tokens;
            }),
        ),
        ("refused-zero-kv-limit", solve(|r| r.config.kv_limit = Some(0))),
        (
            "solve-kv-limit-beam",
            solve(|r| {
                r.config.method = Method::Beam;
                r.config.kv_limit = Some(900);
            }),
        ),
    ]);
    let mut seeds: Vec<(String, Vec<u8>)> = named
        .iter()
        .map(|(name, r)| (format!("{name}.bin"), frame(r)))
        .collect();
    // A connection's worth of frames, then cuts and damaged frames.
    let mut session = frame(&hello());
    session.extend(frame(&full));
    session.extend(frame(&Request::Status));
    session.extend(frame(&Request::Cancel { job: 1 }));
    seeds.push(("session.bin".into(), session.clone()));
    let solve_frame = frame(&full);
    seeds.push(("cut-in-header.bin".into(), solve_frame[..3].to_vec()));
    seeds.push((
        "cut-in-payload.bin".into(),
        solve_frame[..solve_frame.len() / 2].to_vec(),
    ));
    seeds.push((
        "session-cut.bin".into(),
        session[..session.len() - 5].to_vec(),
    ));
    seeds.push(("payload-only.bin".into(), solve_frame[4..].to_vec()));
    let mut trailing = frame(&Request::Status);
    trailing[0] += 2;
    trailing.extend_from_slice(&[0, 0]);
    seeds.push(("trailing-bytes.bin".into(), trailing));
    let mut too_big = ((16u32 << 20) + 1).to_le_bytes().to_vec();
    too_big.extend_from_slice(&[0; 8]);
    seeds.push(("too-large.bin".into(), too_big));
    seeds.push((
        "bad-variant.bin".into(),
        vec![5, 0, 0, 0, 0xfb, 0xff, 0xff, 0, 0],
    ));
    seeds
}

/// A GGUF file under construction: the header is written field by field.
struct Gguf {
    version: u32,
    metadata: Vec<u8>,
    metadata_count: u64,
    tensors: Vec<u8>,
    tensor_count: u64,
    data: Vec<u8>,
}

impl Gguf {
    fn new(version: u32) -> Self {
        Self {
            version,
            metadata: Vec::new(),
            metadata_count: 0,
            tensors: Vec::new(),
            tensor_count: 0,
            data: Vec::new(),
        }
    }

    fn count(&self, out: &mut Vec<u8>, n: u64) {
        if self.version == 1 {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn string(&self, out: &mut Vec<u8>, s: &str) {
        self.count(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    /// A metadata entry of value type `value_type`, its value already encoded.
    fn kv(mut self, key: &str, value_type: u32, value: &[u8]) -> Self {
        let mut m = std::mem::take(&mut self.metadata);
        self.string(&mut m, key);
        m.extend_from_slice(&value_type.to_le_bytes());
        m.extend_from_slice(value);
        self.metadata = m;
        self.metadata_count += 1;
        self
    }

    fn kv_str(self, key: &str, value: &str) -> Self {
        let mut v = Vec::new();
        self.string(&mut v, value);
        self.kv(key, 8, &v)
    }

    fn kv_str_array(self, key: &str, items: &[&str]) -> Self {
        let mut v = 8u32.to_le_bytes().to_vec();
        self.count(&mut v, items.len() as u64);
        for item in items {
            self.string(&mut v, item);
        }
        self.kv(key, 9, &v)
    }

    /// A tensor of `ggml_type` whose data (`bytes` long) follows the previous tensor's.
    fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, bytes: usize) -> Self {
        let mut t = std::mem::take(&mut self.tensors);
        self.string(&mut t, name);
        t.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for &d in dims {
            self.count(&mut t, d);
        }
        t.extend_from_slice(&ggml_type.to_le_bytes());
        t.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        self.tensors = t;
        self.tensor_count += 1;
        self.data.extend((0..bytes).map(|i| (i % 251) as u8));
        self.data.resize(self.data.len().div_ceil(32) * 32, 0);
        self
    }

    fn bytes(&self, alignment: usize) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&self.version.to_le_bytes());
        self.count(&mut b, self.tensor_count);
        self.count(&mut b, self.metadata_count);
        b.extend_from_slice(&self.metadata);
        b.extend_from_slice(&self.tensors);
        if !self.data.is_empty() {
            b.resize(b.len().div_ceil(alignment) * alignment, 0);
            b.extend_from_slice(&self.data);
        }
        b
    }
}

/// A llama-like header with one value of every metadata type and a few tensors.
fn every_type(version: u32) -> Gguf {
    let mut nested = 9u32.to_le_bytes().to_vec(); // an array of arrays of u32
    let g = Gguf::new(version);
    g.count(&mut nested, 2);
    for n in [1u32, 2] {
        nested.extend_from_slice(&4u32.to_le_bytes());
        g.count(&mut nested, u64::from(n));
        for i in 0..n {
            nested.extend_from_slice(&i.to_le_bytes());
        }
    }
    let mut bytes_array = 0u32.to_le_bytes().to_vec();
    g.count(&mut bytes_array, 3);
    bytes_array.extend_from_slice(&[1, 2, 3]);
    g.kv_str("general.architecture", "llama")
        .kv("general.alignment", 4, &32u32.to_le_bytes())
        .kv("t.u8", 0, &[7])
        .kv("t.i8", 1, &[0xff])
        .kv("t.u16", 2, &513u16.to_le_bytes())
        .kv("t.i16", 3, &(-2i16).to_le_bytes())
        .kv("llama.block_count", 4, &2u32.to_le_bytes())
        .kv("t.i32", 5, &(-3i32).to_le_bytes())
        .kv("t.f32", 6, &1.5f32.to_le_bytes())
        .kv("t.bool", 7, &[1])
        .kv("t.u64", 10, &(1u64 << 40).to_le_bytes())
        .kv("t.i64", 11, &(-5i64).to_le_bytes())
        .kv("t.f64", 12, &0.25f64.to_le_bytes())
        .kv("t.bytes", 9, &bytes_array)
        .kv("t.nested", 9, &nested)
        .kv_str_array("tokenizer.ggml.tokens", &["<s>", "</s>", "a", "b"])
        .tensor("token_embd.weight", &[4, 2], 0, 32)
        .tensor("blk.0.attn_q.weight", &[32, 2], 8, 68)
        .tensor("blk.0.ffn_up.weight", &[256], 12, 144)
        .tensor("blk.0.attn_norm.weight", &[2, 2, 2], 1, 16)
}

/// The 52-byte file of `tests/tests/daemon/hostile.rs`: one key claiming 2^40 bytes.
fn crafted() -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&(1u64 << 40).to_le_bytes());
    b.resize(52, b'a');
    b
}

fn gguf_seeds() -> Vec<(String, Vec<u8>)> {
    let full = every_type(3).bytes(32);
    let mut seeds = vec![
        ("empty-v3.gguf".to_owned(), Gguf::new(3).bytes(32)),
        ("every-type-v3.gguf".to_owned(), full.clone()),
        ("every-type-v2.gguf".to_owned(), every_type(2).bytes(32)),
        ("every-type-v1.gguf".to_owned(), every_type(1).bytes(32)),
        (
            "aligned-64.gguf".to_owned(),
            Gguf::new(3)
                .kv("general.alignment", 4, &64u32.to_le_bytes())
                .tensor("w", &[8], 0, 32)
                .bytes(64),
        ),
        (
            "alignment-u64.gguf".to_owned(),
            Gguf::new(3)
                .kv("general.alignment", 10, &16u64.to_le_bytes())
                .tensor("w", &[4], 0, 16)
                .bytes(16),
        ),
        (
            "alignment-zero.gguf".to_owned(),
            Gguf::new(3)
                .kv("general.alignment", 4, &0u32.to_le_bytes())
                .bytes(32),
        ),
        (
            "unsized-type.gguf".to_owned(),
            Gguf::new(3).tensor("iq", &[256, 2], 20, 64).bytes(32),
        ),
        (
            "zero-dim.gguf".to_owned(),
            Gguf::new(3).tensor("z", &[0, 4, 4], 0, 0).bytes(32),
        ),
        (
            "data-past-end.gguf".to_owned(),
            Gguf::new(3).tensor("w", &[64], 0, 16).bytes(32),
        ),
        (
            "bool-2.gguf".to_owned(),
            Gguf::new(2).kv("t.bool", 7, &[2]).bytes(32),
        ),
        ("crafted-key-2p40.gguf".to_owned(), crafted()),
    ];
    let mut bad_magic = full.clone();
    bad_magic[..4].copy_from_slice(b"FUGG");
    seeds.push(("bad-magic.gguf".into(), bad_magic));
    let mut bad_version = full.clone();
    bad_version[4] = 4;
    seeds.push(("bad-version.gguf".into(), bad_version));
    let mut huge_count = full.clone();
    huge_count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    seeds.push(("huge-tensor-count.gguf".into(), huge_count));
    for cut in [7, 23, 60, 200, full.len() / 2, full.len() - 40] {
        seeds.push((
            format!("every-type-v3-cut-{cut}.gguf"),
            full[..cut].to_vec(),
        ));
    }
    seeds
}
