//! Durations as written in configuration files.
//!
//! Tern's own syntax (TOML files, and anything else Tern-specific) is whole numbers with the
//! units `s`, `m` (minutes), `h`, `d` and `w`, optionally combined (`1h30m`). Mosquitto's
//! `persistent_client_expiration` has its own syntax, where `m` means *months*; it is parsed by
//! [`parse_mosquitto_duration`] so that an existing `mosquitto.conf` keeps its meaning.

use std::time::Duration;

/// What a Tern duration looks like, for error messages.
const TERN_EXAMPLES: &str = "a duration such as `30s`, `5m`, `2h`, `14d`, `1w` or `1h30m`";

/// Parses a Tern duration: one or more `<number><unit>` parts with units `s`, `m` (minutes),
/// `h`, `d`, `w`, such as `30s`, `14d` or `1h30m`. A bare number is a number of seconds.
/// Spaces between the parts are allowed.
///
/// # Errors
///
/// A message naming what was expected and what was found, for example
/// ``expected a duration such as `30s`, ..., got `10x` ``.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("expected {TERN_EXAMPLES}, got `{text}`");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    // A bare number is seconds, as an integer value in a TOML file is.
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let secs = trimmed.parse::<u64>().map_err(|_| too_large(text))?;
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let (digits, after_number) = split_number(rest).ok_or_else(invalid)?;
        let number = digits.parse::<u64>().map_err(|_| too_large(text))?;
        let unit_len = after_number
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let seconds_per_unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(invalid()),
        };
        total = number
            .checked_mul(seconds_per_unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| too_large(text))?;
        rest = after_unit.trim_start();
    }
    Ok(Duration::from_secs(total))
}

/// Parses Mosquitto's `persistent_client_expiration` value: a positive whole number followed by
/// exactly one unit, `h` (hours), `d` (days), `w` (weeks), `m` (months of 30 days) or `y` (years
/// of 365 days), as Mosquitto's own parser does. Seconds and minutes do not exist there.
pub(crate) fn parse_mosquitto_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "expected a number followed by h (hours), d (days), w (weeks), m (months of 30 days) \
             or y (years of 365 days), such as `1d` or `2w`, got `{text}`"
        )
    };
    let Some(unit) = text.chars().last() else {
        return Err(invalid());
    };
    let seconds_per_unit: u64 = match unit {
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(invalid()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let number = digits.parse::<u64>().map_err(|_| too_large(text))?;
    if number == 0 {
        // Mosquitto refuses zero as well: "never expire" is written by leaving the option out.
        return Err(format!(
            "must be positive, got `{text}` (leave the option out for no expiry)"
        ));
    }
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| too_large(text))
}

/// Splits the leading digits off `text` (and the spaces after them); `None` if `text` does not
/// start with a digit.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if len == 0 {
        return None;
    }
    let (digits, rest) = text.split_at(len);
    Some((digits, rest.trim_start()))
}

fn too_large(text: &str) -> String {
    format!("the duration `{text}` is too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Result<Duration, String> {
        Ok(Duration::from_secs(n))
    }

    #[test]
    fn tern_single_units() {
        assert_eq!(parse_duration("30s"), secs(30));
        assert_eq!(parse_duration("5m"), secs(300));
        assert_eq!(parse_duration("2h"), secs(7200));
        assert_eq!(parse_duration("14d"), secs(14 * 86_400));
        assert_eq!(parse_duration("1w"), secs(604_800));
    }

    #[test]
    fn tern_bare_number_is_seconds() {
        assert_eq!(parse_duration("10"), secs(10));
        assert_eq!(parse_duration("0"), secs(0));
        assert_eq!(parse_duration(" 7 "), secs(7));
    }

    #[test]
    fn tern_compound_and_spaces() {
        assert_eq!(parse_duration("1h30m"), secs(5400));
        assert_eq!(parse_duration("1d 12h"), secs(129_600));
        assert_eq!(parse_duration("2 m"), secs(120));
        assert_eq!(parse_duration("1m1s1m"), secs(121));
    }

    #[test]
    fn tern_rejects_unknown_units_and_garbage() {
        let expected = |t: &str| {
            Err(format!(
                "expected a duration such as `30s`, `5m`, `2h`, `14d`, `1w` or `1h30m`, got `{t}`"
            ))
        };
        for text in [
            "", "  ", "10x", "1y", "ms", "1ms", "h", "-5s", "1.5h", "1h30", "s10", "10S",
        ] {
            assert_eq!(parse_duration(text), expected(text), "input {text:?}");
        }
    }

    #[test]
    fn tern_overflow_is_an_error() {
        assert_eq!(
            parse_duration("99999999999999999999"),
            Err("the duration `99999999999999999999` is too large".to_owned())
        );
        assert_eq!(
            parse_duration("99999999999999999w"),
            Err("the duration `99999999999999999w` is too large".to_owned())
        );
        assert_eq!(
            parse_duration("18446744073709551616s"),
            Err("the duration `18446744073709551616s` is too large".to_owned())
        );
        assert_eq!(
            parse_duration("18446744073709551615s1s"),
            Err("the duration `18446744073709551615s1s` is too large".to_owned())
        );
    }

    #[test]
    fn mosquitto_units_month_is_thirty_days() {
        assert_eq!(parse_mosquitto_duration("2h"), secs(7200));
        assert_eq!(parse_mosquitto_duration("1d"), secs(86_400));
        assert_eq!(parse_mosquitto_duration("2w"), secs(14 * 86_400));
        assert_eq!(parse_mosquitto_duration("1m"), secs(30 * 86_400));
        assert_eq!(parse_mosquitto_duration("1y"), secs(365 * 86_400));
    }

    #[test]
    fn mosquitto_rejects_seconds_bare_numbers_and_zero() {
        for text in ["", "10", "10s", "d", "1.5d", "-1d", "1dd", " 1d"] {
            let err = parse_mosquitto_duration(text).expect_err(text);
            assert_eq!(
                err,
                format!(
                    "expected a number followed by h (hours), d (days), w (weeks), m (months of 30 \
                     days) or y (years of 365 days), such as `1d` or `2w`, got `{text}`"
                )
            );
        }
        assert_eq!(
            parse_mosquitto_duration("0d"),
            Err("must be positive, got `0d` (leave the option out for no expiry)".to_owned())
        );
        assert_eq!(
            parse_mosquitto_duration("99999999999999999999y"),
            Err("the duration `99999999999999999999y` is too large".to_owned())
        );
    }
}
