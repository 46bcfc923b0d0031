//! `cell0 mount` / `cell0 umount` (to be built).
use std::path::{Path, PathBuf};

/// Flags of `cell0 mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Mount point.
    pub dir: PathBuf,
    #[command(flatten)]
    pub addr: crate::AddrArg,
    /// Stay in the foreground instead of returning once mounted.
    #[arg(long)]
    pub foreground: bool,
}

/// Mount and serve.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    anyhow::bail!("mount not built yet: {args:?}")
}

/// Unmount `dir`.
pub fn umount(dir: &Path) -> anyhow::Result<()> {
    anyhow::bail!("umount not built yet: {}", dir.display())
}
