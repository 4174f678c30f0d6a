//! TUF timestamps: `expires` is `YYYY-MM-DDTHH:MM:SSZ`, exactly, as python-tuf parses it.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::error::TufError;

/// Parses a metadata `expires` value the way python-tuf does (`%Y-%m-%dT%H:%M:%SZ`);
/// fractional seconds and offsets are refused, as there.
pub fn parse_expires(s: &str) -> Result<DateTime<Utc>, TufError> {
    let ok_shape = s.len() == 20 && s.ends_with('Z') && s.as_bytes().get(10) == Some(&b'T');
    if !ok_shape {
        return Err(TufError::BadExpiry(s.into()));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
        .map(|n| n.and_utc())
        .map_err(|_| TufError::BadExpiry(s.into()))
}

/// Parses a user-given point in time (`--at`): RFC 3339 / ISO 8601 with an offset,
/// with `T` or a space between date and time, or a bare date (midnight UTC).
pub fn parse_user_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    let t = s.trim().replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&t) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S") {
        return Some(n.and_utc());
    }
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc())
}

/// Formats a time as TUF's `expires` (whole seconds, `Z`).
pub fn format_expires(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An expiry given by a person: a duration from `now` (`90d`, `12w`, `1y`; a year is
/// 365 days) or a time as [`parse_user_time`] reads it.
pub fn parse_expiry_spec(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    if let Ok(n) = num.parse::<i64>() {
        let days = match unit {
            "d" => Some(n),
            "w" => n.checked_mul(7),
            "y" => n.checked_mul(365),
            _ => None,
        };
        if let Some(d) = days.filter(|d| *d > 0 && *d < 365 * 100) {
            return Some(now + chrono::Duration::days(d));
        }
    }
    parse_user_time(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_is_strict() {
        assert!(parse_expires("2030-01-01T00:00:00Z").is_ok());
        for bad in [
            "2021-12-18T13:28:12.99008-06:00",
            "2022-05-11T19:09:02.663975009Z",
            "2030-01-01",
            "2030-13-01T00:00:00Z",
        ] {
            assert!(parse_expires(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_specs() {
        let now = parse_expires("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            format_expires(parse_expiry_spec("30d", now).unwrap()),
            "2026-01-31T00:00:00Z"
        );
        assert_eq!(
            format_expires(parse_expiry_spec("1y", now).unwrap()),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            format_expires(parse_expiry_spec("2028-05-01", now).unwrap()),
            "2028-05-01T00:00:00Z"
        );
        assert!(parse_expiry_spec("-3d", now).is_none());
        assert!(parse_expiry_spec("soon", now).is_none());
    }

    #[test]
    fn user_times_accept_the_faketime_format() {
        let t = parse_user_time("2025-02-09 12:02:08+00:00").unwrap();
        assert_eq!(t, parse_expires("2025-02-09T12:02:08Z").unwrap());
        assert!(parse_user_time("2025-02-09").is_some());
        assert!(parse_user_time("yesterday").is_none());
    }
}
