//! `cell0 bench` (to be built).

/// Flags of `cell0 bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

/// Run the benchmarks and print the figures.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench not built yet: {args:?}")
}
