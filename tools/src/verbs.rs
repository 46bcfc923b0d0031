//! Plain 9P client verbs for scripts (to be built).

/// `cell0 ls`.
pub fn ls(addr: &str, path: &str) -> anyhow::Result<()> {
    anyhow::bail!("ls not built yet: {addr} {path}")
}
/// `cell0 cat`.
pub fn cat(addr: &str, path: &str) -> anyhow::Result<()> {
    anyhow::bail!("cat not built yet: {addr} {path}")
}
/// `cell0 stat`.
pub fn stat(addr: &str, path: &str) -> anyhow::Result<()> {
    anyhow::bail!("stat not built yet: {addr} {path}")
}
/// `cell0 mkdir`.
pub fn mkdir(addr: &str, path: &str) -> anyhow::Result<()> {
    anyhow::bail!("mkdir not built yet: {addr} {path}")
}
/// `cell0 rm`.
pub fn rm(addr: &str, path: &str) -> anyhow::Result<()> {
    anyhow::bail!("rm not built yet: {addr} {path}")
}
/// `cell0 write`.
pub fn write(addr: &str, path: &str, text: Option<&str>) -> anyhow::Result<()> {
    anyhow::bail!("write not built yet: {addr} {path} {text:?}")
}
