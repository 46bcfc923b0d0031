//! `cell0 serve`: the hosted node (to be built).
use std::path::PathBuf;

/// Flags of `cell0 serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = crate::config::DEFAULT_ADDR)]
    pub listen: String,
    /// Data directory [default: $XDG_DATA_HOME/cell0]
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Run the node until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve not built yet: {args:?}")
}
