//! Solving over the socket: results with stats, streamed events, status, metrics, shared
//! models, and sixteen concurrent clients each getting exactly their own results.

use std::collections::BTreeSet;

use ets_core::protocol::{EngineChoice, JobEvent, ModelRole, Request, Response, SolveRequest};
use ets_core::search::{SearchEvent, SearchOutcome};
use ets_core::Method;

use crate::shared;
use crate::support::tiny_solve;

#[test]
fn a_solve_streams_events_and_returns_a_result_with_stats() {
    let daemon = shared();
    let mut c = daemon.connect();
    let mut request =
        SolveRequest::new("Tom has 3 boxes of 4 apples and eats 2. How many are left?");
    request.tag = Some("apples".into());
    request.config.method = Method::Ets;
    request.config.width = 3;
    request.config.max_depth = 2;
    request.config.max_step_tokens = 12;
    request.config.max_total_tokens = 24;
    request.config.seed = 7;
    let job = c.submit(request);
    let (events, end) = c.finish(job);
    let Response::Result {
        job: j,
        tag,
        outcome,
    } = end
    else {
        panic!("expected a result, got {end:?}\n{}", daemon.log());
    };
    assert_eq!((j, tag.as_deref()), (job, Some("apples")));
    let s = &outcome.stats;
    assert!(
        s.nodes > 1 && s.generated_tokens > 0 && s.prm_calls > 0,
        "{s:?}"
    );
    assert!(s.kv_metric_tokens > 0 && s.peak_live_bytes > 0, "{s:?}");
    assert!(
        s.embedded_texts > 0,
        "ETS clustered with the embedder: {s:?}"
    );
    assert!(
        matches!(events.first(), Some(JobEvent::LoadingModels)),
        "{events:?}"
    );
    assert!(events.contains(&JobEvent::Started), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, JobEvent::Search(SearchEvent::DepthDone { live_bytes, .. }) if *live_bytes > 0)));

    // One engine plays policy and PRM (the native one: `auto` picks it for a llama-family
    // GGUF on the CPU); the embedder is the second model. (Another test may add a mistral.rs
    // entry for the same model.)
    let status = c.status();
    let smol: Vec<_> = status
        .models
        .iter()
        .filter(|m| m.model == "smollm2-135m" && m.engine == "native")
        .collect();
    assert_eq!(
        smol.len(),
        1,
        "policy and PRM share one engine: {:?}",
        status.models
    );
    let roles: BTreeSet<String> = smol[0].roles.iter().map(|r| format!("{r:?}")).collect();
    assert!(
        roles.contains("Policy") && roles.contains("Prm"),
        "{roles:?}"
    );
    assert!(status
        .models
        .iter()
        .any(|m| m.model == "minilm-l6" && m.roles == vec![ModelRole::Embedder]));
    assert!(
        status.jobs_done >= 1 && status.kv_nodes_leaked == 0,
        "{status:?}"
    );

    let Response::Metrics(text) = c.request(&Request::Metrics) else {
        panic!("metrics")
    };
    assert!(text.contains("# TYPE ets_jobs_total counter"), "{text}");
    let done: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ets_jobs_total{outcome=\"done\"} "))
        .expect("a done counter")
        .parse()
        .unwrap();
    assert!(done >= 1.0, "{text}");
    check_exposition(&text);
}

/// The text-format rules a Prometheus (or OpenMetrics) parser enforces: every sample belongs to
/// the family its `# TYPE` line announced just before, a family is announced once, label values
/// are quoted, values are numbers, and no gauge's name is a counter's name without `_total`
/// (OpenMetrics parsers strip the suffix, and the two would merge into one family).
fn check_exposition(text: &str) {
    use std::collections::BTreeMap;
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                families.insert(name.to_owned(), kind.to_owned()).is_none(),
                "family {name} announced twice"
            );
            current = Some(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert_eq!(
            Some(name),
            current.as_deref(),
            "sample outside its family: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (key, value) = pair.split_once('=').expect("label=value");
                    assert!(
                        key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(value.starts_with('"'), "{line}");
                }
            }
        }
    }
    for (name, kind) in &families {
        if kind == "counter" {
            let stem = name.strip_suffix("_total").expect("counters end in _total");
            assert!(
                !families.contains_key(stem),
                "gauge {stem} collides with counter {name}"
            );
        }
    }
}

fn outcome_texts(outcome: &SearchOutcome) -> Vec<String> {
    outcome.nodes.iter().map(|n| n.text.clone()).collect()
}

#[test]
fn sixteen_clients_get_their_own_results() {
    // Three problems per client keep 48 concurrent solves (plus the references) on the two
    // CI cores; five took three minutes.
    const PROBLEMS: usize = 3;
    let daemon = shared();
    let problems: Vec<String> = (0..PROBLEMS)
        .map(|k| format!("What is {} plus {}?", 10 + k, 3 * k + 1))
        .collect();
    fn request(problems: &[String], k: usize, tag: String) -> SolveRequest {
        let mut r = tiny_solve(&problems[k], Method::BestOfN, 1, 3, 11 + k as u64);
        r.tag = Some(tag);
        r.stream_events = false;
        r
    }
    // References, one at a time.
    let mut c = daemon.connect();
    let references: Vec<Vec<String>> = (0..PROBLEMS)
        .map(|k| {
            let job = c.submit(request(&problems, k, format!("ref-{k}")));
            match c.finish(job).1 {
                Response::Result { outcome, .. } => outcome_texts(&outcome),
                other => panic!("reference {k}: {other:?}"),
            }
        })
        .collect();
    let distinct: BTreeSet<_> = references.iter().collect();
    assert_eq!(
        distinct.len(),
        PROBLEMS,
        "the problems give different trees: {references:?}"
    );

    let clients: Vec<_> = (0..16)
        .map(|client| {
            let socket = daemon.socket.clone();
            let problems = problems.clone();
            let references = references.clone();
            std::thread::spawn(move || {
                let mut c = crate::support::Conn::open(&socket).unwrap();
                c.hello().unwrap();
                // All sent before any reply is read (pipelined on one connection); the
                // replies come in request order, the results in any order.
                for k in 0..PROBLEMS {
                    let r = request(&problems, k, format!("c{client}-p{k}"));
                    c.send(&Request::Solve(Box::new(r)));
                }
                let mut jobs = Vec::new();
                let mut results = Vec::new();
                while jobs.len() < PROBLEMS || results.len() < PROBLEMS {
                    match c.recv().expect("replies and results") {
                        Response::Accepted { job } => jobs.push(job),
                        Response::Result { job, tag, outcome } => results.push((job, tag, outcome)),
                        other => panic!("client {client}: unexpected {other:?}"),
                    }
                }
                for (job, tag, outcome) in results {
                    let k = jobs.iter().position(|j| *j == job).expect("a job of ours");
                    assert_eq!(tag, Some(format!("c{client}-p{k}")), "tag of job {job}");
                    assert_eq!(
                        outcome_texts(&outcome),
                        references[k],
                        "client {client} problem {k}"
                    );
                }
            })
        })
        .collect();
    for (i, t) in clients.into_iter().enumerate() {
        t.join().unwrap_or_else(|_| panic!("client {i} failed"));
    }
}

#[test]
fn one_model_runs_on_both_engines_side_by_side() {
    let daemon = shared();
    let mut c = daemon.connect();
    let problem = "A pen costs 3 dollars. How much do 5 pens cost?";
    let mut lengths = Vec::new();
    for engine in [EngineChoice::MistralRs, EngineChoice::Native] {
        let mut request = tiny_solve(problem, Method::Rebase, 2, 8, 3);
        request.models.engine = Some(engine);
        let job = c.submit(request);
        match c.finish(job).1 {
            Response::Result { outcome, .. } => {
                assert!(outcome.stats.generated_tokens > 0, "{engine}: {outcome:?}");
                lengths.push(outcome.stats.prompt_tokens);
            }
            other => panic!("{engine}: {other:?}\n{}", daemon.log()),
        }
    }
    // The same chat template and tokenizer on both engines.
    assert_eq!(lengths[0], lengths[1], "prompt tokens per engine");
    let status = c.status();
    let engines: BTreeSet<&str> = status
        .models
        .iter()
        .filter(|m| m.model == "smollm2-135m")
        .map(|m| m.engine.as_str())
        .collect();
    assert_eq!(
        engines,
        BTreeSet::from(["mistralrs", "native"]),
        "{:?}",
        status.models
    );
    // ETS can cluster with the native policy's own hidden states instead of MiniLM; on
    // mistral.rs that is refused by name.
    for (engine, works) in [
        (EngineChoice::Native, true),
        (EngineChoice::MistralRs, false),
    ] {
        let mut request = tiny_solve(problem, Method::Ets, 3, 8, 5);
        request.config.max_depth = 2;
        request.config.max_total_tokens = 16;
        request.models.engine = Some(engine);
        request.models.embedder = Some("policy".into());
        let job = c.submit(request);
        match (c.finish(job).1, works) {
            (Response::Result { outcome, .. }, true) => {
                assert!(outcome.stats.embedded_texts > 0, "{outcome:?}")
            }
            (Response::Failed { message, .. }, false) => {
                assert!(message.contains("hidden states"), "{message}")
            }
            (other, _) => panic!("{engine} with the policy embedder: {other:?}"),
        }
    }
    // A native engine asked for a model it cannot run fails the job and says why.
    let mut request = tiny_solve(problem, Method::Rebase, 2, 8, 3);
    request.models.policy = Some(
        crate::support::models_dir()
            .join("minilm-l6")
            .display()
            .to_string(),
    );
    request.models.engine = Some(EngineChoice::Native);
    let job = c.submit(request);
    match c.finish(job).1 {
        Response::Failed { message, .. } => {
            assert!(message.contains("native engine"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
