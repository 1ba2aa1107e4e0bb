//! Rates in the configuration: an amount per unit of time, such as `10/s`, `30/m` or
//! `64KiB/s`.

use std::time::Duration;

/// Parses `AMOUNT/UNIT`, where `UNIT` is `s` (second), `m` (minute) or `h` (hour) and `amount`
/// parses the part before the slash. Blanks around the parts are allowed. `example` shows a
/// valid value in the error message.
pub(super) fn parse_rate(
    text: &str,
    amount: impl Fn(&str) -> Result<u64, String>,
    example: &str,
) -> Result<(u64, Duration), String> {
    let invalid = || {
        format!(
            "expected a rate such as {example}: an amount, `/`, then `s`, `m` or `h`, got \
             `{text}`"
        )
    };
    let (number, unit) = text.split_once('/').ok_or_else(invalid)?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(invalid()),
    };
    let number = number.trim();
    if number.is_empty() {
        return Err(invalid());
    }
    Ok((amount(number)?, per))
}

/// A whole number, for rates of messages or connections.
pub(super) fn parse_count(text: &str) -> Result<u64, String> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number, got `{text}`"));
    }
    text.parse()
        .map_err(|_| format!("the number `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let count = |t: &str| parse_rate(t, parse_count, "`10/s`");
        assert_eq!(count("10/s"), Ok((10, Duration::from_secs(1))));
        assert_eq!(count(" 30 / m "), Ok((30, Duration::from_secs(60))));
        assert_eq!(count("1/h"), Ok((1, Duration::from_secs(3600))));
        assert_eq!(count("0/s"), Ok((0, Duration::from_secs(1))));
        let invalid = |t: &str| {
            Err(format!(
                "expected a rate such as `10/s`: an amount, `/`, then `s`, `m` or `h`, got `{t}`"
            ))
        };
        for text in ["10", "10/", "/s", "10/d", "10/sec", "10 per s", ""] {
            assert_eq!(count(text), invalid(text), "input {text:?}");
        }
        assert_eq!(
            count("-1/s"),
            Err("expected a whole number, got `-1`".to_owned())
        );
        assert_eq!(
            count("1.5/s"),
            Err("expected a whole number, got `1.5`".to_owned())
        );
        assert_eq!(
            count("99999999999999999999/s"),
            Err("the number `99999999999999999999` is too large".to_owned())
        );
    }
}
