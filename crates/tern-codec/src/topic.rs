//! Topic name and topic filter syntax (MQTT §4.7).

/// Whether `name` is a valid topic name for PUBLISH: at least one character, no wildcard
/// (MQTT-4.7.1-1, MQTT-4.7.3-1). Strings are already known to be valid UTF-8 without U+0000.
#[must_use]
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty() && !name.bytes().any(|b| b == b'+' || b == b'#')
}

/// Whether `filter` is a valid topic filter: at least one character, `+` fills a whole level,
/// `#` fills the last level (MQTT-4.7.1-2, MQTT-4.7.1-3). Shared filters
/// (`$share/name/filter`) are checked too (MQTT-4.8.2-1, MQTT-4.8.2-2).
#[must_use]
pub fn is_valid_topic_filter(filter: &str) -> bool {
    match split_shared(filter) {
        Some(Ok((_, inner))) => is_valid_plain_filter(inner),
        Some(Err(())) => false,
        None => is_valid_plain_filter(filter),
    }
}

fn is_valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if is_last => {}
            _ if level.bytes().any(|b| b == b'+' || b == b'#') => return false,
            _ => {}
        }
    }
    true
}

/// Splits a shared subscription filter `$share/{name}/{filter}` into its share name and filter.
///
/// Returns `None` for a filter that is not shared, and `Some(Err(()))` for one that starts with
/// `$share/` but has an empty or invalid share name or no filter part.
#[must_use]
#[allow(clippy::result_unit_err)] // the only failure is "malformed share", nothing to say
pub fn split_shared(filter: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((name, inner)) = rest.split_once('/') else {
        return Some(Err(()));
    };
    if name.is_empty() || inner.is_empty() || name.bytes().any(|b| b == b'+' || b == b'#') {
        return Some(Err(()));
    }
    Some(Ok((name, inner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(is_valid_topic_name("a/b"));
        assert!(is_valid_topic_name("/"));
        assert!(is_valid_topic_name(" "));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("a/+"));
        assert!(!is_valid_topic_name("a/#"));
        assert!(!is_valid_topic_name("a+"));
    }

    #[test]
    fn topic_filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/+",
            "a//b",
            "/",
            "$SYS/#",
            "$share/g/a/#",
        ] {
            assert!(is_valid_topic_filter(ok), "{ok}");
        }
        for bad in [
            "",
            "a#",
            "a/#/b",
            "a+",
            "a/b+/c",
            "#/a",
            "$share/g",
            "$share//a",
            "$share/g+/a",
        ] {
            assert!(!is_valid_topic_filter(bad), "{bad}");
        }
    }

    #[test]
    fn shared_split() {
        assert_eq!(split_shared("$share/g/a/b"), Some(Ok(("g", "a/b"))));
        assert_eq!(split_shared("a/b"), None);
        assert_eq!(split_shared("$share/g/"), Some(Err(())));
    }
}
