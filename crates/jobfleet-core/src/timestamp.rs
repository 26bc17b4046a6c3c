//! Timestamps on the wire: RFC 3339, UTC, millisecond precision.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Formats `at` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T13:31:19.123Z`.
///
/// This is the form of every timestamp jobfleet writes (headers and audit events); readers
/// accept any RFC 3339 timestamp whose instant this can write again (see [`parse_timestamp`]).
/// `at` must lie in years 0000..=9999 in UTC, as every instant [`parse_timestamp`] returns does.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(UtcOffset::UTC)
        .format(&format)
        .expect("a UTC date in years 0..=9999 always formats")
}

/// Parses an RFC 3339 timestamp, with any offset and precision, into UTC.
///
/// # Errors
///
/// Text that is not RFC 3339, and instants outside years 0000..=9999 in UTC (an offset can
/// move a date at either end of the calendar out of them): [`format_timestamp`] could not
/// write those back, so a job read with one could not be retried or dead-lettered.
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    let at = OffsetDateTime::parse(text, &Rfc3339)?;
    at.checked_to_offset(UtcOffset::UTC)
        .filter(|utc| (0..=9999).contains(&utc.year()))
        .ok_or(time::error::Parse::ParseFromDescription(
            time::error::ParseFromDescription::InvalidComponent("year"),
        ))
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

    #[test]
    fn refuses_instants_it_could_not_write_back() {
        // UTC years -1 and 10000 (regressions in tests/decode_fuzz.rs).
        assert!(parse_timestamp("0000-01-01T00:00:00+00:59").is_err());
        assert!(parse_timestamp("9999-12-31T23:59:59-00:01").is_err());
        let first = parse_timestamp("0000-01-01T00:59:00+00:59").unwrap();
        assert_eq!(format_timestamp(first), "0000-01-01T00:00:00.000Z");
        let last = parse_timestamp("9999-12-31T23:59:59.999Z").unwrap();
        assert_eq!(format_timestamp(last), "9999-12-31T23:59:59.999Z");
    }
}
