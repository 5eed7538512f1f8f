//! Expansion: exact tokens, seeded children, steps that end at the delimiter.

use ets_core::{FinishReason, Policy};

use crate::support::{exclusive, policy, request, root, sampling};

#[test]
fn greedy_expansion_is_deterministic() {
    let _g = exclusive();
    let mut p = policy();
    let ctx = root(&mut p);
    let greedy = sampling(0.0);
    let a = p.expand(&[request(&ctx, 2, 24, 1, &greedy)]).unwrap();
    let b = p.expand(&[request(&ctx, 1, 24, 99, &greedy)]).unwrap();
    assert_eq!(a[0].len(), 2);
    assert!(!a[0][0].token_ids.is_empty());
    assert_eq!(a[0][0], a[0][1], "greedy children of one node are equal");
    assert_eq!(
        a[0][0], b[0][0],
        "greedy does not depend on the seed or the call"
    );
}

#[test]
fn seeded_sampling_is_reproducible_and_seeds_differ() {
    let _g = exclusive();
    let mut p = policy();
    let ctx = root(&mut p);
    let s = sampling(1.0);
    let reqs = [request(&ctx, 3, 16, 7, &s), request(&ctx, 3, 16, 8, &s)];
    let first = p.expand(&reqs).unwrap();
    let again = p.expand(&reqs[..1]).unwrap();
    assert_eq!(first[0], again[0], "same request, same seed: same children");
    assert_ne!(first[0], first[1], "another seed gives other children");
    let alone = p.expand(&[request(&ctx, 1, 16, 7, &s)]).unwrap();
    assert_eq!(
        alone[0][0], first[0][0],
        "a child does not depend on its siblings or batch"
    );
    let ids: Vec<_> = first[0].iter().map(|c| &c.token_ids).collect();
    assert!(
        ids[0] != ids[1] || ids[1] != ids[2],
        "siblings differ: {ids:?}"
    );
}

#[test]
fn children_end_exactly_at_the_delimiter() {
    let _g = exclusive();
    let mut p = policy();
    let ctx = root(&mut p);
    let s = sampling(0.7);
    let max = 48;
    let children = p.expand(&[request(&ctx, 4, max, 3, &s)]).unwrap().remove(0);
    let engine = p.engine().clone();
    let mut at_delimiter = 0;
    for c in &children {
        assert_eq!(engine.decode(&c.token_ids).unwrap(), c.text);
        assert_eq!(c.logprobs.len(), c.token_ids.len());
        assert!(
            c.logprobs.iter().all(|&l| l <= 0.0 && l.is_finite()),
            "{:?}",
            c.logprobs
        );
        match c.finish {
            FinishReason::Delimiter => {
                at_delimiter += 1;
                assert!(c.text.ends_with("\n\n"), "{:?}", c.text);
                assert_eq!(c.text.find("\n\n"), Some(c.text.len() - 2), "{:?}", c.text);
            }
            FinishReason::Length => assert_eq!(c.token_ids.len(), max),
            FinishReason::EndOfSequence => assert!(!c.text.contains("\n\n"), "{:?}", c.text),
        }
    }
    assert!(
        at_delimiter > 0,
        "some child should end a step: {children:?}"
    );
}

#[test]
fn child_ids_are_parent_ids_plus_its_own() {
    let _g = exclusive();
    let mut p = policy();
    let engine = p.engine().clone();
    let ctx = root(&mut p);
    let greedy = sampling(0.0);
    let child = p.expand(&[request(&ctx, 1, 32, 0, &greedy)]).unwrap()[0][0].clone();
    let mut path = ctx.clone();
    path.extend(&child.token_ids);
    let grandchild = p.expand(&[request(&path, 1, 32, 0, &greedy)]).unwrap()[0][0].clone();
    let mut full = path.clone();
    full.extend(&grandchild.token_ids);
    let expected = format!(
        "{}{}{}",
        engine.decode(&ctx).unwrap(),
        child.text,
        grandchild.text
    );
    assert_eq!(engine.decode(&full).unwrap(), expected);
    assert!(!grandchild.token_ids.is_empty());
}
