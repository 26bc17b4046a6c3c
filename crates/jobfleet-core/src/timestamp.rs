//! Timestamps on the wire: RFC 3339, UTC, millisecond precision.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Formats `at` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T13:31:19.123Z`.
///
/// This is the form of every timestamp jobfleet writes (headers and audit events); readers
/// accept any RFC 3339 timestamp.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(UtcOffset::UTC)
        .format(&format)
        .expect("a UTC date in years 0..=9999 always formats")
}

/// Parses an RFC 3339 timestamp, with any offset and precision.
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_utc_with_milliseconds() {
        let at = datetime!(2026-11-23 14:31:19.123456 +01:00);
        assert_eq!(format_timestamp(at), "2026-11-23T13:31:19.123Z");
    }

    #[test]
    fn parses_what_it_formats_and_other_offsets() {
        let at = datetime!(2026-11-23 13:31:19.123 UTC);
        assert_eq!(parse_timestamp(&format_timestamp(at)).unwrap(), at);
        assert_eq!(
            parse_timestamp("2026-11-23T14:31:19.123+01:00").unwrap(),
            at
        );
        assert!(parse_timestamp("yesterday").is_err());
    }
}
