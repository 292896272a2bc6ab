//! Time: the fixed epoch stamped on what a build creates
//! (`SOURCE_DATE_EPOCH`, the reproducible-builds convention, when set),
//! the clock, and UTC formatting without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// 2020-01-01T00:00:00Z: the time stamped on files a build creates unless
/// `SOURCE_DATE_EPOCH` says otherwise (the FAT side uses the same date), so
/// the same inputs give the same bytes.
pub const DEFAULT_EPOCH: i64 = 1_577_836_800;

/// The time a build stamps: `SOURCE_DATE_EPOCH`, else [`DEFAULT_EPOCH`].
pub fn epoch() -> i64 {
    source_date_epoch().unwrap_or(DEFAULT_EPOCH)
}

/// `SOURCE_DATE_EPOCH`, if set to a number.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.parse().ok()
}

/// Seconds since the Unix epoch now (0 for a clock set before 1970).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The time stamped on what an edit of an existing image changes:
/// `SOURCE_DATE_EPOCH` when set, else now.
pub fn stamp_now() -> i64 {
    source_date_epoch().unwrap_or_else(now)
}

/// `YYYY-MM-DD hh:mm:ss` in UTC (civil-from-days, H. Hinnant's algorithm).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[test]
    fn utc_dates_include_leap_days() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
    }
}
