//! UTC calendar fields of Unix times, for the dates the front ends print (IMAP INTERNALDATE,
//! RFC 5322 `Date`), without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/// 1970-01-01 was a Thursday.
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A Unix time broken down in UTC, with English month and weekday abbreviations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcFields {
    pub year: i64,
    pub month: &'static str,
    pub day: u32,
    pub weekday: &'static str,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

impl UtcFields {
    pub fn of(unix: i64) -> Self {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month: MONTHS
                .get(month.saturating_sub(1) as usize)
                .copied()
                .unwrap_or("Jan"),
            day,
            weekday: WEEKDAYS
                .get(days.rem_euclid(7) as usize)
                .copied()
                .unwrap_or("Thu"),
            hour: secs / 3600,
            minute: secs % 3600 / 60,
            second: secs % 60,
        }
    }
}

/// RFC 5322 date in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
pub fn rfc2822_date(unix: i64) -> String {
    let t = UtcFields::of(unix);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        t.weekday, t.day, t.month, t.year, t.hour, t.minute, t.second
    )
}

/// Civil date (year, month 1-12, day) of a day count since 1970-01-01 (H. Hinnant's algorithm,
/// proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(
            UtcFields::of(951_782_400 + 3_723),
            UtcFields {
                year: 2000,
                month: "Feb",
                day: 29,
                weekday: "Tue",
                hour: 1,
                minute: 2,
                second: 3,
            }
        );
        assert_eq!(UtcFields::of(-1).year, 1969);
        assert!(now_unix() > 1_700_000_000);
    }
}
