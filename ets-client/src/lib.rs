//! ets-client: the SDK for talking to `etsd` (placeholder; the SDK is being written).
