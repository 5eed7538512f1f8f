//! `ets`: the ETS command line (placeholder until the CLI issue lands).
fn main() -> anyhow::Result<()> {
    anyhow::bail!("ets is not built yet: the CLI arrives with its own issue")
}
