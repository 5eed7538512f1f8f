//! An end-to-end ETS search with the small model as policy and judge PRM on mistral.rs.

use ets_engine::mistralrs::{MistralPolicy, MistralReward};
use ets_engine::{BertEmbedder, PolicyOptions, PrmProfile};
use ets_kvtree::KvTree;

use crate::gsm8k_search::run_and_check;
use crate::support::{engine, exclusive, minilm_dir};

#[test]
fn ets_search_on_a_gsm8k_problem_finishes() {
    let _g = exclusive();
    let engine = engine();
    let mut policy = MistralPolicy::new(engine.clone(), PolicyOptions::default());
    let mut reward =
        MistralReward::new(engine.clone(), &PrmProfile::builtin("judge").unwrap()).unwrap();
    let mut embedder = BertEmbedder::load(&minilm_dir()).unwrap();
    let mut kv = KvTree::new(
        engine
            .kv_bytes_per_token()
            .expect("GGUF models know their KV size"),
    );
    run_and_check(
        "mistral.rs",
        &mut policy,
        &mut reward,
        &mut embedder,
        &mut kv,
    );
}
