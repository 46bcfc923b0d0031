//! Scopes: the subtree a capability reaches, as a clean absolute path.

use alloc::string::String;
use core::fmt;

/// The longest scope accepted, in bytes.
pub const MAX_SCOPE: usize = 1024;
/// The longest name within a scope.
pub const MAX_NAME: usize = 255;

/// Why a path is not a usable scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// It does not start with `/`.
    NotAbsolute,
    /// It is longer than [`MAX_SCOPE`].
    TooLong,
    /// One of its names is empty (`//`), `.` or `..`, longer than
    /// [`MAX_NAME`], or holds a NUL or control byte.
    BadName(String),
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeError::NotAbsolute => {
                f.write_str("a scope must be an absolute path such as /chan/alerts")
            }
            ScopeError::TooLong => write!(f, "a scope is at most {MAX_SCOPE} bytes"),
            ScopeError::BadName(n) => write!(
                f,
                "'{}' is not a name a scope may hold (no empty names, '.', '..', NUL or control bytes, at most {MAX_NAME} bytes)",
                n.escape_debug()
            ),
        }
    }
}

/// Check that `name` may be one element of a path: not empty, not `.` or
/// `..`, no `/`, no NUL or control bytes, at most [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= MAX_NAME
        && !name.bytes().any(|b| b == b'/' || b < 0x20 || b == 0x7f)
}

/// Check and normalise a scope: `/` or `/a/b` (a trailing slash is
/// dropped; nothing else is rewritten, so `..` is refused, not resolved).
pub fn normalize(path: &str) -> Result<String, ScopeError> {
    if !path.starts_with('/') {
        return Err(ScopeError::NotAbsolute);
    }
    if path.len() > MAX_SCOPE {
        return Err(ScopeError::TooLong);
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(String::from("/"));
    }
    for name in trimmed[1..].split('/') {
        if !check_name(name) {
            return Err(ScopeError::BadName(String::from(name)));
        }
    }
    Ok(String::from(trimmed))
}

/// Whether the normalised path `path` is `scope` or below it.
pub fn contains(scope: &str, path: &str) -> bool {
    if scope == "/" {
        return path.starts_with('/');
    }
    path == scope || (path.starts_with(scope) && path.as_bytes().get(scope.len()) == Some(&b'/'))
}

/// Whether `path` is an ancestor of `scope` (so it must be walkable, to
/// reach the scope, though the holder sees nothing else in it).
pub fn leads_to(path: &str, scope: &str) -> bool {
    contains(path, scope) && path != scope
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_refuses_escapes() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/chan/alerts/").unwrap(), "/chan/alerts");
        assert_eq!(normalize("chan"), Err(ScopeError::NotAbsolute));
        assert!(normalize("/chan/../ctl").is_err());
        assert!(normalize("/chan//x").is_err());
        assert!(normalize("/chan/./x").is_err());
        assert!(normalize("/chan/a\0b").is_err());
        assert!(normalize(&alloc::format!("/{}", "x".repeat(300))).is_err());
    }

    #[test]
    fn containment_is_by_whole_names() {
        assert!(contains("/chan/a", "/chan/a"));
        assert!(contains("/chan/a", "/chan/a/data"));
        assert!(!contains("/chan/a", "/chan/ab"));
        assert!(!contains("/chan/a", "/chan"));
        assert!(contains("/", "/anything"));
        assert!(leads_to("/chan", "/chan/a"));
        assert!(leads_to("/", "/chan/a"));
        assert!(!leads_to("/chan/a", "/chan/a"));
    }
}
