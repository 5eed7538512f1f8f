//! [`RemoteEmbedder`]: step embeddings for ETS clustering from a serving engine's
//! `/v1/embeddings` (a model added with `--role embedder --remote URL`), across its endpoints
//! with the same failover, retries and health as the policy and PRM.

use std::sync::Arc;

use ets_core::protocol::EndpointInfo;

use super::Remote;
use crate::engines::TextEmbedder;
use crate::error::Error;

/// A remote embedding model.
#[derive(Debug, Clone)]
pub struct RemoteEmbedder(pub(super) Arc<Remote>);

impl TextEmbedder for RemoteEmbedder {
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let remote = &self.0;
        remote.call(remote.next_job_key(), None, "embedding step texts", |e| {
            remote
                .dialect
                .embed(&remote.http, &e.url, texts, &remote.served_name)
        })
    }

    fn endpoints(&self) -> Vec<EndpointInfo> {
        self.0.endpoint_infos()
    }
}
