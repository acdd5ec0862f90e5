//! Values as people write them in the config: durations (`30s`, `1h30m`),
//! sizes (`256MiB`, `10MB`), and TOML values passed on as JSON params.
//!
//! Parse errors are plain strings meant for a config problem: they say what
//! was wrong and show an example of what works.

use std::time::Duration;

const DURATION_EXAMPLES: &str = "e.g. `500ms`, `30s`, `5m`, `1h30m`, `1d`";
const SIZE_EXAMPLES: &str = "e.g. `512`, `64KiB`, `256MiB`, `1.5GiB`, `10MB`";

/// Duration units, largest first: suffix and length in milliseconds.
const DURATION_UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parse a duration: `500ms`, `30s`, `5m`, `2h`, `1d`, combinations from the
/// largest unit to the smallest (`1h30m`, `1m 30s`), or a plain integer
/// number of seconds (`90`). Units are case-insensitive.
///
/// # Errors
/// A message naming what is wrong with `text`, with examples.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "a duration is empty; write one like {DURATION_EXAMPLES}"
        ));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{text}` is too large a number of seconds"));
    }

    let mut total_ms: u128 = 0;
    // Index into DURATION_UNITS of the last unit seen, to enforce the order.
    let mut last_unit: Option<usize> = None;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: expected a number at `{rest}` ({DURATION_EXAMPLES})"
            ));
        }
        let (number, after) = rest.split_at(digits);
        let after = after.trim_start();
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() {
            return Err(format!(
                "`{text}` is not a duration: `{number}` has no unit; use ms, s, m, h or d \
                 ({DURATION_EXAMPLES}); a plain number alone means seconds"
            ));
        }
        let unit_lower = unit.to_ascii_lowercase();
        let Some(index) = DURATION_UNITS.iter().position(|(u, _)| *u == unit_lower) else {
            return Err(format!(
                "`{text}` is not a duration: unknown unit `{unit}`; use ms, s, m, h or d \
                 ({DURATION_EXAMPLES})"
            ));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!(
                "`{text}` is not a duration: write each unit once, largest first (e.g. `1h30m`)"
            ));
        }
        last_unit = Some(index);
        let number: u128 = number
            .parse()
            .map_err(|_| format!("`{text}` is too long a duration"))?;
        total_ms = number
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        rest = after.trim_start();
    }

    let secs =
        u64::try_from(total_ms / 1000).map_err(|_| format!("`{text}` is too long a duration"))?;
    // The remainder is below 1000, so it fits.
    let millis = (total_ms % 1000) as u64;
    Ok(Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// Format a duration the way [`parse_duration`] reads it: `2h`, `1m30s`,
/// `250ms`, `1d2h`, `0s`. Sub-millisecond parts are dropped (a non-zero
/// duration below one millisecond is shown as `<1ms`).
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return if duration.is_zero() { "0s" } else { "<1ms" }.to_owned();
    }
    let mut out = String::new();
    for (unit, len) in DURATION_UNITS {
        let count = ms / len;
        if count > 0 {
            out.push_str(&format!("{count}{unit}"));
            ms %= len;
        }
    }
    out
}

/// Size units: lowercase suffix and multiplier.
const SIZE_UNITS: [(&str, u64); 11] = [
    ("", 1),
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("pib", 1 << 50),
];

/// Parse a size in bytes: `512`, `64KiB`, `256MiB`, `1GiB`, `1.5GiB` (binary
/// units), `10MB` (SI units, powers of 1000). Units are case-insensitive and
/// may follow a space (`256 MiB`). A fraction is rounded down to whole bytes.
///
/// # Errors
/// A message naming what is wrong with `text`, with examples.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("a size is empty; write one like {SIZE_EXAMPLES}"));
    }
    let number_len = trimmed
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, unit) = trimmed.split_at(number_len);
    let unit = unit.trim_start();
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(format!(
            "`{text}` is not a size: expected a number then a unit ({SIZE_EXAMPLES})"
        ));
    }
    let unit_lower = unit.to_ascii_lowercase();
    let Some(&(_, multiplier)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit_lower) else {
        if matches!(unit_lower.as_str(), "k" | "m" | "g" | "t") {
            let upper = unit_lower.to_ascii_uppercase();
            return Err(format!(
                "`{text}`: unit `{unit}` is ambiguous; write `{upper}iB` (powers of 1024) \
                 or `{upper}B` (powers of 1000)"
            ));
        }
        return Err(format!(
            "`{text}` is not a size: unknown unit `{unit}`; use B, KiB, MiB, GiB, TiB \
             (powers of 1024) or KB, MB, GB, TB (powers of 1000), {SIZE_EXAMPLES}"
        ));
    };
    if !fraction.is_empty() && multiplier == 1 {
        return Err(format!(
            "`{text}`: a number of bytes must be whole (e.g. `512`)"
        ));
    }

    let too_large = || format!("`{text}` is too large a size (at most 16 EiB)");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole
        .checked_mul(u128::from(multiplier))
        .ok_or_else(too_large)?;
    // Fraction digits beyond the 18th cannot change the result by a whole byte
    // for any multiplier here, so they are ignored.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().map_err(|_| too_large())?;
        let denominator = 10u128.pow(fraction.len() as u32);
        bytes += numerator * u128::from(multiplier) / denominator;
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Format a size with the largest binary unit it reaches: `512 B`, `256 MiB`,
/// `1.5 GiB` (at most two decimals, trailing zeros dropped).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("EiB", 1 << 60),
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            if bytes % size == 0 {
                return format!("{} {unit}", bytes / size);
            }
            // Hundredths, rounded to nearest.
            let hundredths = (u128::from(bytes) * 100 + u128::from(size) / 2) / u128::from(size);
            let (int, frac) = (hundredths / 100, hundredths % 100);
            return match frac {
                0 => format!("{int} {unit}"),
                f if f % 10 == 0 => format!("{int}.{} {unit}", f / 10),
                f => format!("{int}.{f:02} {unit}"),
            };
        }
    }
    format!("{bytes} B")
}

/// A TOML value as JSON (task params); datetimes become their TOML text (RFC 3339).
///
/// # Errors
/// A float JSON cannot hold (NaN, infinity).
pub fn toml_to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(number) => Json::Number(number),
            None => {
                return Err(format!(
                    "`{f}` cannot be passed to a task (JSON has no NaN or infinity)"
                ));
            }
        },
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(datetime) => Json::String(datetime.to_string()),
        toml::Value::Array(items) => {
            Json::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2H"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn plain_integer_duration_is_seconds() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_why_and_show_an_example() {
        let unit = parse_duration("5x").unwrap_err();
        assert!(
            unit.contains("unknown unit `x`") && unit.contains("1h30m"),
            "{unit}"
        );
        let missing = parse_duration("1h30").unwrap_err();
        assert!(missing.contains("`30` has no unit"), "{missing}");
        let order = parse_duration("30m1h").unwrap_err();
        assert!(order.contains("largest first"), "{order}");
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(
            parse_duration("-5s")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(parse_duration("1.5h").is_err());
        assert!(
            parse_duration("99999999999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn durations_format_compactly_and_round_trip() {
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(93_600)), "1d2h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_nanos(10)), "<1ms");
        for text in ["1d2h3m4s5ms", "45s", "1h"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }

    #[test]
    fn sizes_in_binary_and_si_units_parse() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("256 mib"), Ok(256 << 20));
        assert_eq!(parse_size("2gb"), Ok(2_000_000_000));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
    }

    #[test]
    fn bad_sizes_say_why_and_show_an_example() {
        let unit = parse_size("5 parsecs").unwrap_err();
        assert!(
            unit.contains("unknown unit `parsecs`") && unit.contains("256MiB"),
            "{unit}"
        );
        let ambiguous = parse_size("512M").unwrap_err();
        assert!(
            ambiguous.contains("`MiB`") && ambiguous.contains("`MB`"),
            "{ambiguous}"
        );
        assert!(parse_size("MiB").unwrap_err().contains("expected a number"));
        assert!(parse_size("1.5").unwrap_err().contains("whole"));
        assert!(parse_size("1..5GiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("").unwrap_err().contains("empty"));
        assert!(parse_size("20000000TiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes_format_with_the_largest_unit() {
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(1_000_000), "976.56 KiB");
        assert_eq!(format_size(u64::MAX), "16 EiB");
        assert_eq!(parse_size(&format_size(64 << 20)), Ok(64 << 20));
    }
}
