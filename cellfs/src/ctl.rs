//! The one parser for every ctl file.
//!
//! A ctl write is one command per line, `verb [arg…] [key=value…]`. Each
//! object lists its verbs in a [`Verb`] table; this module checks the verb,
//! the argument count and the keys against it, so "unknown verb" and its
//! friends read the same for every object, and a man page's verb list can be
//! checked against the table. A write is parsed whole before anything is
//! applied, which is what makes multi-line writes all or nothing.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::Error;

/// One verb a ctl file accepts.
#[derive(Debug)]
pub struct Verb {
    /// The word that starts the line.
    pub name: &'static str,
    /// Fewest positional arguments.
    pub min_args: usize,
    /// Most positional arguments; [`usize::MAX`] takes the rest of the line
    /// as free text (see [`CtlLine::rest`]).
    pub max_args: usize,
    /// The `key=value` keys it accepts.
    pub keys: &'static [&'static str],
    /// How to write it, for error messages: `note TEXT…`.
    pub usage: &'static str,
}

/// One parsed line.
#[derive(Debug, PartialEq, Eq)]
pub struct CtlLine<'a> {
    /// The verb, as named in the table.
    pub verb: &'static str,
    /// Positional arguments, in order.
    pub args: Vec<&'a str>,
    /// `key=value` arguments, in order.
    pub kv: Vec<(&'a str, &'a str)>,
    /// Everything after the verb, trimmed: free text for verbs that take it.
    pub rest: &'a str,
}

impl CtlLine<'_> {
    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.kv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The value of `key` as a whole number, if given; `object` names the
    /// ctl file's owner for the error.
    pub fn get_u64(&self, object: &str, key: &str) -> Result<Option<u64>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                Error::Invalid(format!(
                    "{object}: {}: {key}=\"{v}\" is not a whole number",
                    self.verb
                ))
            }),
        }
    }
}

/// Parse a whole ctl write for `object` (as it appears in errors, e.g.
/// `chan alerts`) against `table`. Blank lines and `#` comments are skipped;
/// a write with no command is an error.
pub fn parse<'a>(object: &str, table: &[Verb], text: &'a [u8]) -> Result<Vec<CtlLine<'a>>, Error> {
    let text = core::str::from_utf8(text)
        .map_err(|_| Error::Invalid(format!("{object}: ctl text is not UTF-8")))?;
    let mut lines = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines.push(parse_line(object, table, line)?);
    }
    if lines.is_empty() {
        return Err(Error::Invalid(format!(
            "{object}: empty ctl write; expected {}",
            verb_list(table)
        )));
    }
    Ok(lines)
}

fn parse_line<'a>(object: &str, table: &[Verb], line: &'a str) -> Result<CtlLine<'a>, Error> {
    let mut words = line.split_ascii_whitespace();
    let first = words.next().unwrap_or_default();
    // `full=block` is short for `full full=block`: a verb whose one key
    // is its own name may be written as that key alone.
    let (word, inline) = match first.split_once('=') {
        Some((k, v)) if table.iter().any(|t| t.name == k && t.keys.contains(&k)) => (k, Some(v)),
        _ => (first, None),
    };
    let Some(verb) = table.iter().find(|v| v.name == word) else {
        return Err(Error::Invalid(format!(
            "{object}: unknown verb \"{word}\"; expected {}",
            verb_list(table)
        )));
    };
    let rest = line[first.len()..].trim_start();
    let mut parsed = CtlLine {
        verb: verb.name,
        args: Vec::new(),
        kv: inline.map(|v| (verb.name, v)).into_iter().collect(),
        rest,
    };
    if verb.max_args == usize::MAX {
        if rest.is_empty() && verb.min_args > 0 {
            return Err(usage_error(object, verb, "missing text"));
        }
        return Ok(parsed);
    }
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => {
                if !verb.keys.contains(&k) {
                    let expected = if verb.keys.is_empty() {
                        String::from("no keys")
                    } else {
                        verb.keys.join(", ")
                    };
                    return Err(Error::Invalid(format!(
                        "{object}: {}: unknown key \"{k}\"; expected {expected}",
                        verb.name
                    )));
                }
                parsed.kv.push((k, v));
            }
            None => parsed.args.push(w),
        }
    }
    if parsed.args.len() < verb.min_args {
        return Err(usage_error(object, verb, "missing argument"));
    }
    if parsed.args.len() > verb.max_args {
        let extra = parsed.args[verb.max_args];
        return Err(usage_error(
            object,
            verb,
            &format!("unexpected argument \"{extra}\""),
        ));
    }
    Ok(parsed)
}

fn usage_error(object: &str, verb: &Verb, what: &str) -> Error {
    Error::Invalid(format!(
        "{object}: {}: {what}; usage: {}",
        verb.name, verb.usage
    ))
}

/// A duration in seconds from `N`, `Ns`, `Nm`, `Nh` or `Nd` (a whole
/// number, then an optional unit); `None` for anything else or past
/// `u64::MAX` seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parse a write that must hold exactly one line: each is a separate
/// change that `who` (`the log`, `the swarm`) makes one at a time.
pub fn parse_one<'a>(
    object: &str,
    table: &[Verb],
    data: &'a [u8],
    who: &str,
) -> Result<CtlLine<'a>, Error> {
    let mut lines = parse(object, table, data)?;
    if lines.len() > 1 {
        return Err(Error::Invalid(format!(
            "{object}: {} changes in one write; {who} makes one change at a time, so write them one by one",
            lines.len()
        )));
    }
    Ok(lines.remove(0))
}

/// Whether `text` is `HOST:PORT`: a host name or address (IPv6 in
/// brackets), a colon, a port from 1 to 65535.
pub fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        !host.is_empty()
            && host.chars().all(|c| c.is_ascii_graphic())
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

/// An ed25519 public key from its 64 hex digits (as `/cap/key` shows it).
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    let b = text.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut key = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        key[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(key)
}

/// `a, b, c`: the verbs of a table, for messages and manual checks.
pub fn verb_list(table: &[Verb]) -> String {
    let names: Vec<&str> = table.iter().map(|v| v.name).collect();
    names.join(", ")
}

/// Longest free text (a note, an `exec` line, a report) that the one-line
/// rendering of a command keeps, in bytes (longer is cut, with `…`).
pub const MAX_NOTE: usize = 64;

/// `text` cut to at most `max` bytes on a character boundary, with `…`
/// when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return String::from(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Write `items` separated by `; ` (the lines of one ctl write, joined).
pub fn join_lines<T: core::fmt::Display>(
    f: &mut core::fmt::Formatter<'_>,
    items: impl IntoIterator<Item = T>,
) -> core::fmt::Result {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// A size as `limit mem=` reads it (`crate::agent::parse_size`), in the
/// largest unit that divides it: `256M`, `1G`, `1536K`, `1000`.
pub fn size_word(bytes: u64) -> String {
    for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Verb] = &[
        Verb {
            name: "close",
            min_args: 0,
            max_args: 0,
            keys: &[],
            usage: "close",
        },
        Verb {
            name: "note",
            min_args: 1,
            max_args: usize::MAX,
            keys: &[],
            usage: "note TEXT…",
        },
        Verb {
            name: "qos",
            min_args: 0,
            max_args: 0,
            keys: &["rate", "burst"],
            usage: "qos rate=R burst=B",
        },
    ];

    fn err(text: &str) -> String {
        match parse("chan alerts", TABLE, text.as_bytes()) {
            Err(e) => alloc::string::ToString::to_string(&e),
            Ok(v) => panic!("parsed {v:?}"),
        }
    }

    #[test]
    fn unknown_verb_names_object_word_and_choices() {
        assert_eq!(
            err("qoss rate=1"),
            "chan alerts: unknown verb \"qoss\"; expected close, note, qos"
        );
    }

    #[test]
    fn all_lines_parse_or_none() {
        assert!(err("close\nbogus").contains("\"bogus\""));
        let ok = parse("x", TABLE, b"close\n\n# c\nqos rate=5 burst=2\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].get_u64("x", "rate").unwrap(), Some(5));
        assert_eq!(ok[1].get("burst"), Some("2"));
    }

    #[test]
    fn arity_keys_and_values_are_checked() {
        assert_eq!(
            err("close now"),
            "chan alerts: close: unexpected argument \"now\"; usage: close"
        );
        assert_eq!(
            err("qos speed=3"),
            "chan alerts: qos: unknown key \"speed\"; expected rate, burst"
        );
        assert_eq!(
            err("note"),
            "chan alerts: note: missing text; usage: note TEXT…"
        );
        assert_eq!(
            err(""),
            "chan alerts: empty ctl write; expected close, note, qos"
        );
        let line = parse("x", TABLE, b"qos rate=fast").unwrap();
        assert!(line[0].get_u64("x", "rate").is_err());
    }

    #[test]
    fn a_verb_that_is_its_own_key_can_be_written_as_key_value() {
        const T: &[Verb] = &[Verb {
            name: "full",
            min_args: 0,
            max_args: 0,
            keys: &["full"],
            usage: "full=block|refuse",
        }];
        let v = parse("x", T, b"full=block").unwrap();
        assert_eq!((v[0].verb, v[0].get("full")), ("full", Some("block")));
        let v = parse("x", T, b"full full=refuse").unwrap();
        assert_eq!(v[0].get("full"), Some("refuse"));
        assert!(
            parse("x", TABLE, b"close=now").is_err(),
            "only for such verbs"
        );
    }

    #[test]
    fn free_text_keeps_spacing_after_verb() {
        let v = parse("x", TABLE, b"note  hello  world \n").unwrap();
        assert_eq!(v[0].rest, "hello  world");
    }

    #[test]
    fn non_utf8_is_refused() {
        assert!(parse("x", TABLE, &[0xff, 0xfe]).is_err());
    }
}
