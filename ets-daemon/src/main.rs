//! `etsd`: the ETS daemon (placeholder until the daemon issue lands).
fn main() -> anyhow::Result<()> {
    anyhow::bail!("etsd is not built yet: the daemon arrives with its own issue")
}
