//! Go's duration syntax, which Pebble speaks everywhere (`500ms`, `1m30s`).
//!
//! [`parse`] accepts what Go's `time.ParseDuration` accepts (non-negative
//! here: Pebble has no use for negative durations) and [`format()`] prints
//! what Go's `Duration.String` prints, so a plan read back from the double
//! matches a real Pebble's byte for byte.

use std::time::Duration;

/// Parses a Go duration such as `1h2m3.5s`, `300ms` or `1.5h`.
///
/// On failure returns Go's message, `time: invalid duration "abc"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let mut s = text.strip_prefix('+').unwrap_or(text);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(invalid());
    }
    let mut total: u128 = 0; // nanoseconds
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, rest) = s.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(invalid)?;
        let mut div: u128 = 1;
        let mut frac_value: u128 = 0;
        for d in frac.bytes().take(18) {
            frac_value = frac_value * 10 + u128::from(d - b'0');
            div *= 10;
        }
        value += frac_value * scale / div;
        total = total.checked_add(value).ok_or_else(invalid)?;
        s = rest;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a duration as Go's `Duration.String` does: `1h0m0s`, `1m30s`,
/// `4.5s`, `500ms`, `0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        // Sub-second: the largest unit that keeps an integer part.
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let rem = nanos % 3_600_000_000_000;
    let minutes = rem / 60_000_000_000;
    let sec_nanos = rem % 60_000_000_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", fraction(sec_nanos, 1_000_000_000)));
    out
}

/// `value/scale` printed with the shortest exact decimal fraction.
fn fraction(value: u128, scale: u128) -> String {
    let int = value / scale;
    let mut frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let mut digits = String::new();
    let mut s = scale;
    while frac > 0 {
        s /= 10;
        digits.push(char::from(b'0' + (frac / s) as u8));
        frac %= s;
    }
    format!("{int}.{digits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        fn check(text: &str, nanos: Option<u128>) {
            assert_eq!(parse(text).ok().map(|d| d.as_nanos()), nanos, "{text}");
        }
        check("0", Some(0));
        check("10s", Some(10_000_000_000));
        check("1m30s", Some(90_000_000_000));
        check("1.5h", Some(5_400_000_000_000));
        check("500ms", Some(500_000_000));
        check("4.000s", Some(4_000_000_000));
        check("2us", Some(2_000));
        check("2µs", Some(2_000));
        check("1h2m3.5s", Some(3_723_500_000_000));
        check(".5s", Some(500_000_000));
        check("abc", None);
        check("10", None);
        check("", None);
        check("-1s", None);
        check("1x", None);
        check("1..2s", None);
        assert_eq!(parse("abc").unwrap_err(), "time: invalid duration \"abc\"");
        assert_eq!(
            parse("10").unwrap_err(),
            "time: missing unit in duration \"10\""
        );
    }

    #[test]
    fn formats_like_go() {
        fn check(nanos: u64, text: &str) {
            assert_eq!(format(Duration::from_nanos(nanos)), text);
        }
        check(0, "0s");
        check(90_000_000_000, "1m30s");
        check(10_000_000_000, "10s");
        check(3_600_000_000_000, "1h0m0s");
        check(4_500_000_000, "4.5s");
        check(500_000_000, "500ms");
        check(1_500_000, "1.5ms");
        check(2_000, "2µs");
        check(7, "7ns");
        check(3_723_500_000_000, "1h2m3.5s");
    }
}
