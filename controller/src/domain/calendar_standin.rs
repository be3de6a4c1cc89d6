//! UNFINISHED STAND-IN for `working_days` (being written on the `calendar` branch): the same
//! API with weekends only and no bank holidays. Deleted once `calendar` is merged.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// How long the home has to do something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    WorkingDays(u32),
    Hours(u32),
    Days(u32),
}

/// The bank holidays (none, in this stand-in).
#[derive(Clone, Debug, Default)]
pub struct BankHolidays;

impl BankHolidays {
    pub fn england_and_wales() -> Self {
        BankHolidays
    }

    /// Applies corrections in the format of the government's bank-holidays JSON.
    pub fn with_corrections_from_json(self, json: &str) -> Result<Self, String> {
        serde_json::from_str::<serde_json::Value>(json)
            .map(|_| self)
            .map_err(|e| e.to_string())
    }
}

impl Deadline {
    /// When something started at `start` is due.
    pub fn due(&self, start: Timestamp, tz: &TimeZone, _holidays: &BankHolidays) -> Timestamp {
        match *self {
            Deadline::Hours(h) => start + (i64::from(h) * 3600).seconds(),
            Deadline::Days(d) => start
                .to_zoned(tz.clone())
                .checked_add(i64::from(d).days())
                .map(|z| z.timestamp())
                .unwrap_or(start),
            Deadline::WorkingDays(n) => {
                let mut day = start.to_zoned(tz.clone()).date();
                let mut left = n;
                while left > 0 {
                    day = day.tomorrow().unwrap_or(day);
                    if !matches!(
                        day.weekday(),
                        jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
                    ) {
                        left -= 1;
                    }
                }
                day.at(23, 59, 59, 0)
                    .to_zoned(tz.clone())
                    .map(|z| z.timestamp())
                    .unwrap_or(start)
            }
        }
    }
}
