//! The `Time:` line of `.formats`. kd prints it in the debugger host's local
//! time; here the offset from UTC is a parameter (the walkthrough's host was
//! at UTC+5:30, so 64636261 shows as `Tue May 16 16:30:49 2023`).
//!
//! kd reads a value that fits in 32 bits as a C runtime `time_t` (seconds
//! since 1970, `Mon Jan  7 15:31:46 1985`) and any other as a FILETIME
//! (100 ns since 1601, with milliseconds and the zone:
//! `Fri Jan  7 20:15:00.577 28163 (UTC - 7:00)`).

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds between 1601-01-01 and 1970-01-01.
const FILETIME_TO_UNIX: i64 = 11_644_473_600;

/// The `Time:` field for a 64-bit value (x86 values arrive sign-extended).
#[must_use]
pub fn time_field(value: u64, utc_offset_minutes: i32) -> String {
    if value >> 32 == 0 {
        ctime(value.cast_signed(), utc_offset_minutes)
    } else if value >= 0xffff_ffff_8000_0000 {
        // A negative 32-bit time_t.
        "***** Invalid".to_owned()
    } else if value.cast_signed() < 0 {
        "***** Invalid FILETIME".to_owned()
    } else {
        filetime(value, utc_offset_minutes)
    }
}

/// `Tue May 16 16:30:49 2023` for seconds since 1970 at the given offset.
#[must_use]
pub fn ctime(seconds: i64, utc_offset_minutes: i32) -> String {
    let local = seconds.saturating_add(i64::from(utc_offset_minutes) * 60);
    let (day, [hour, minute, second]) = split_day(local);
    let (weekday, year, month, date) = calendar(day);
    format!("{weekday} {month} {date:>2} {hour:02}:{minute:02}:{second:02} {year}")
}

/// `Fri Jan  7 20:15:00.577 28163 (UTC - 7:00)` for a FILETIME.
#[must_use]
pub fn filetime(ticks: u64, utc_offset_minutes: i32) -> String {
    let seconds = i64::try_from(ticks / 10_000_000).unwrap_or(i64::MAX) - FILETIME_TO_UNIX;
    let millis = ticks / 10_000 % 1000;
    let local = seconds + i64::from(utc_offset_minutes) * 60;
    let (day, [hour, minute, second]) = split_day(local);
    let (weekday, year, month, date) = calendar(day);
    let sign = if utc_offset_minutes < 0 { '-' } else { '+' };
    let offset = utc_offset_minutes.unsigned_abs();
    format!(
        "{weekday} {month} {date:>2} {hour:02}:{minute:02}:{second:02}.{millis:03} {year} (UTC {sign} {}:{:02})",
        offset / 60,
        offset % 60
    )
}

/// Days since 1970 and the time of day.
const fn split_day(seconds: i64) -> (i64, [i64; 3]) {
    let day = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    (day, [time / 3600, time / 60 % 60, time % 60])
}

/// Weekday, year, month and day of month for days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn calendar(day: i64) -> (&'static str, i64, &'static str, i64) {
    let weekday = DAYS[usize::try_from((day + 4).rem_euclid(7)).unwrap_or(0)];
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let date = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    (weekday, year, name, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crt_times() {
        // The walkthrough's host was at UTC+5:30.
        assert_eq!(ctime(0x6463_6261, 330), "Tue May 16 16:30:49 2023");
        assert_eq!(ctime(0x6463_6261, 0), "Tue May 16 11:00:49 2023");
        // Microsoft's docs, written at UTC-8, and a session at UTC-7.
        assert_eq!(ctime(0x1c40_7e62, -480), "Mon Jan  7 15:31:46 1985");
        assert_eq!(ctime(0x5772_4231, -420), "Tue Jun 28 02:24:01 2016");
        assert_eq!(ctime(0, 0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(0x22, 330), "Thu Jan  1 05:30:34 1970");
        assert_eq!(ctime(0xffff_ffff, 0), "Sun Feb  7 06:28:15 2106");
        assert_eq!(ctime(951_782_400, 0), "Tue Feb 29 00:00:00 2000");
        assert_eq!(ctime(-1, 0), "Wed Dec 31 23:59:59 1969");
    }

    #[test]
    fn filetimes() {
        assert_eq!(
            filetime(0x7453_6d4d_0388_0000, -420),
            "Fri Jan  7 20:15:00.577 28163 (UTC - 7:00)"
        );
        assert_eq!(filetime(0, 0), "Mon Jan  1 00:00:00.000 1601 (UTC + 0:00)");
        assert_eq!(
            filetime(116_444_736_000_000_000, 330),
            "Thu Jan  1 05:30:00.000 1970 (UTC + 5:30)"
        );
    }

    #[test]
    fn time_field_picks_the_reading() {
        assert_eq!(time_field(0x6463_6261, 330), "Tue May 16 16:30:49 2023");
        assert_eq!(time_field(0xffff_ffff_8001_0033, 0), "***** Invalid");
        assert_eq!(
            time_field(0xffff_f802_0f3f_4280, 0),
            "***** Invalid FILETIME"
        );
        assert_eq!(
            time_field(0x7453_6d4d_0388_0000, -420),
            "Fri Jan  7 20:15:00.577 28163 (UTC - 7:00)"
        );
    }
}
