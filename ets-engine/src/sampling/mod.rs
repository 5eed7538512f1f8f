//! Our own seeded sampling, shared by every engine that draws tokens itself (the native engine
//! and mistral.rs through its logits processor; sampling belongs to neither):
//! - `draw`: temperature / top-k / top-p draws from a seeded stream, and the streams.
//! - `step`: one child step: the delimiter guard, the step record, [`sample_step`].

mod draw;
mod step;

pub(crate) use draw::child_stream;
pub(crate) use step::{sample_step, DelimiterGuard, StepRecord, StepSpec};
