//! `cell0 up`: a node with defaults, mounted (to be built).
use std::path::PathBuf;

/// Flags of `cell0 up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where to mount the tree.
    #[arg(default_value = "cell")]
    pub dir: PathBuf,
}

/// Serve and mount until Ctrl-C, then unmount and stop.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    anyhow::bail!("up not built yet: {args:?}")
}
