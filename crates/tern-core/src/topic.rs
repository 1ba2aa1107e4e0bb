//! Topic filter matching against topic names (MQTT §4.7).

/// Whether `filter` matches `topic`. The filter must be valid and not shared.
///
/// `+` matches one level (possibly empty), `#` the rest including the parent level, and a
/// filter starting with a wildcard never matches a topic starting with `$` (MQTT-4.7.2-1).
/// Comparison is exact: no normalisation (MQTT-4.7.3-4).
#[must_use]
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Splits the first level off a topic: `("a", Some("b/c"))` for `"a/b/c"`.
pub(crate) fn split_level(topic: &str) -> (&str, Option<&str>) {
    match topic.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (topic, None),
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn matching_rules() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("sport/+", "sport/", true),
            ("sport/+", "sport", false),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("A", "a", false),
            ("a b", "a b", true),
            ("/", "/", true),
            ("+/#", "a", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(
                topic_matches(filter, topic),
                expected,
                "{filter} vs {topic}"
            );
        }
    }
}
