//! Names: the one rule of object names (channels, groups, agents,
//! runners), and the rule of any name walked or created in the tree.

use alloc::format;
use alloc::string::String;

/// Longest object name.
pub const MAX_OBJECT: usize = 64;

/// Longest file name accepted in a walk or create.
pub const MAX_ELEMENT: usize = 255;

/// Whether `name` may name an object: 1–64 of `[A-Za-z0-9._-]`, not
/// starting with a dot, so that it is safe in a path, a shell word and a
/// cgroup.
pub fn is_object(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    !name.is_empty()
        && name.len() <= MAX_OBJECT
        && !name.starts_with('.')
        && name.chars().all(ok_char)
}

/// The refusal of `name` as the name of a `what` (`chan`, `agent`,
/// `runner`): `what "NAME": names are …`.
pub fn bad_object(what: &str, name: &str) -> String {
    format!(
        "{what} \"{}\": names are 1-{MAX_OBJECT} of A-Z a-z 0-9 . _ - and do not start with '.'",
        name.escape_debug()
    )
}

/// Refuse names no file can have: empty, `.`, `..` (for creation), with a
/// slash or NUL, or too long; the refusal says which.
pub fn check_element(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(String::from("empty, '.' and '..' cannot be created"));
    }
    if name.len() > MAX_ELEMENT {
        return Err(format!("longer than {MAX_ELEMENT} bytes"));
    }
    if name.contains(['/', '\0']) {
        return Err(String::from("names cannot hold '/' or NUL"));
    }
    Ok(())
}
