//! The working-day calendar of England and Wales, and the deadlines the home owes after an
//! emergency action (RM4: tell the social worker within 1 working day; Regulation 35: 24 hours,
//! 48 hours, 5 days).
//!
//! Bank holidays are **computed from the rules** (so the calendar never runs out) and can be
//! **corrected from the government's published list** (`https://www.gov.uk/bank-holidays.json`),
//! so a holiday proclaimed after a release is still honoured. Deadlines are worked out in the
//! home's own time zone with `jiff`, which knows when the clocks change; nothing here adds
//! hours by hand. Pure: no clock, no files — callers pass the time, the zone and the file text.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, ToSpan};
use serde::Deserialize;

/// The time zone of a home unless it says otherwise.
pub const DEFAULT_HOME_TIME_ZONE: &str = "Europe/London";

/// One bank holiday: its date and its name as GOV.UK writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankHoliday {
    pub date: Date,
    pub title: String,
}

/// The bank holidays of England and Wales: the rules, plus any years corrected from the
/// government's published list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BankHolidays {
    /// Years the published file covered; for these years the file is the whole truth.
    corrected: BTreeMap<i16, Vec<BankHoliday>>,
}

/// Why a bank-holidays file could not be used. Each message is one line and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HolidayFileError {
    #[error(
        "the bank holidays file is not in the government's format ({0}); download it again from https://www.gov.uk/bank-holidays.json"
    )]
    Malformed(String),
    #[error(
        "event {number} of \"england-and-wales\" ({title:?}) has the date {date:?}, which is not a real date written YYYY-MM-DD; correct that date or download the file again"
    )]
    BadDate {
        /// Counted from 1, in the order of the file.
        number: usize,
        title: String,
        date: String,
    },
    #[error(
        "the bank holidays file lists no England and Wales holidays, so it corrects nothing; check it is the file from https://www.gov.uk/bank-holidays.json"
    )]
    NoEvents,
}

/// The government's file, as far as Haven needs it. Scotland and Northern Ireland are ignored
/// (Haven's homes are in England), as are fields Haven does not use.
#[derive(Deserialize)]
struct GovUkFile {
    #[serde(rename = "england-and-wales")]
    england_and_wales: GovUkDivision,
}

#[derive(Deserialize)]
struct GovUkDivision {
    events: Vec<GovUkEvent>,
}

#[derive(Deserialize)]
struct GovUkEvent {
    title: String,
    date: String,
}

impl BankHolidays {
    /// The calendar computed from the rules alone.
    pub fn england_and_wales() -> BankHolidays {
        BankHolidays::default()
    }

    /// The computed calendar, with every year that `text` (the government's bank-holidays
    /// JSON) covers replaced by the file's England and Wales dates. Nothing is half-applied:
    /// a file with one bad entry is refused whole.
    pub fn with_corrections_from_json(text: &str) -> Result<BankHolidays, HolidayFileError> {
        BankHolidays::england_and_wales().corrected_from_json(text)
    }

    /// This calendar with the years `text` covers replaced by the file's dates.
    pub fn corrected_from_json(mut self, text: &str) -> Result<BankHolidays, HolidayFileError> {
        let file: GovUkFile = serde_json::from_str(text)
            .map_err(|e| HolidayFileError::Malformed(one_line(&e.to_string())))?;
        if file.england_and_wales.events.is_empty() {
            return Err(HolidayFileError::NoEvents);
        }
        let mut years: BTreeMap<i16, Vec<BankHoliday>> = BTreeMap::new();
        for (i, event) in file.england_and_wales.events.into_iter().enumerate() {
            let date = parse_file_date(&event.date).ok_or_else(|| HolidayFileError::BadDate {
                number: i + 1,
                title: event.title.clone(),
                date: event.date.clone(),
            })?;
            years.entry(date.year()).or_default().push(BankHoliday {
                date,
                title: event.title,
            });
        }
        for (year, mut list) in years {
            list.sort_by_key(|h| h.date);
            list.dedup_by_key(|h| h.date);
            self.corrected.insert(year, list);
        }
        Ok(self)
    }

    /// The years whose holidays come from a published file rather than the rules.
    pub fn corrected_years(&self) -> Vec<i16> {
        self.corrected.keys().copied().collect()
    }

    /// The bank holidays of `year`, in date order.
    pub fn in_year(&self, year: i16) -> Vec<BankHoliday> {
        match self.corrected.get(&year) {
            Some(list) => list.clone(),
            None => computed_england_and_wales(year),
        }
    }

    /// Whether `date` is a bank holiday in England and Wales.
    pub fn is_bank_holiday(&self, date: Date) -> bool {
        self.in_year(date.year()).iter().any(|h| h.date == date)
    }

    /// A working day is any day but Saturday, Sunday and a bank holiday.
    pub fn is_working_day(&self, date: Date) -> bool {
        !is_weekend(date) && !self.is_bank_holiday(date)
    }

    fn dates_in_year(&self, year: i16) -> BTreeSet<Date> {
        self.in_year(year).into_iter().map(|h| h.date).collect()
    }
}

/// serde_json's messages are already one line; make sure of it, since this goes to a terminal.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// GOV.UK writes dates exactly as `YYYY-MM-DD`; anything else is refused rather than guessed.
fn parse_file_date(raw: &str) -> Option<Date> {
    let b = raw.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    raw.parse::<Date>().ok()
}

fn is_weekend(date: Date) -> bool {
    matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// Easter Sunday in the Gregorian calendar (the "anonymous Gregorian algorithm" of Meeus,
/// Jones and Butcher). `None` only for years outside what a date can hold.
pub fn easter_sunday(year: i16) -> Option<Date> {
    let y = i32::from(year);
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let n = h + l - 7 * m + 114;
    let month = i8::try_from(n.div_euclid(31)).ok()?;
    let day = i8::try_from(n.rem_euclid(31) + 1).ok()?;
    Date::new(year, month, day).ok()
}

/// Extra one-off holidays, by royal proclamation (checked against GOV.UK's list). The regular
/// holidays moved in the same years are handled in `early_may` and `spring`.
const PROCLAIMED: &[(Date, &str)] = &[
    (
        Date::constant(1977, 6, 7),
        "Silver Jubilee of Queen Elizabeth II",
    ),
    (Date::constant(1981, 7, 29), "Royal wedding"),
    (Date::constant(1999, 12, 31), "Millennium celebrations"),
    (
        Date::constant(2002, 6, 3),
        "Golden Jubilee of Queen Elizabeth II",
    ),
    (Date::constant(2011, 4, 29), "Royal wedding"),
    (Date::constant(2012, 6, 5), "Queen’s Diamond Jubilee"),
    (Date::constant(2022, 6, 3), "Platinum Jubilee bank holiday"),
    (
        Date::constant(2022, 9, 19),
        "Bank Holiday for the State Funeral of Queen Elizabeth II",
    ),
    (
        Date::constant(2023, 5, 8),
        "Bank holiday for the coronation of King Charles III",
    ),
];

/// The early May bank holiday: first Monday in May, moved to 8 May for the VE Day
/// anniversaries of 1995 (a Monday) and 2020 (a Friday).
fn early_may(year: i16) -> Option<Date> {
    match year {
        1995 | 2020 => Date::new(year, 5, 8).ok(),
        _ => Date::new(year, 5, 1)
            .ok()?
            .nth_weekday_of_month(1, Weekday::Monday)
            .ok(),
    }
}

/// The spring bank holiday: last Monday in May, moved in jubilee years to make a long weekend.
fn spring(year: i16) -> Option<Date> {
    match year {
        2002 => Date::new(2002, 6, 4).ok(),
        2012 => Date::new(2012, 6, 4).ok(),
        2022 => Date::new(2022, 6, 2).ok(),
        _ => Date::new(year, 5, 1)
            .ok()?
            .nth_weekday_of_month(-1, Weekday::Monday)
            .ok(),
    }
}

/// The bank holidays of England and Wales for `year`, from the rules of the Banking and
/// Financial Dealings Act 1971 and the royal proclamations since. The regular set is today's
/// (complete from 1978, when the early May holiday began); earlier years are not modelled.
pub fn computed_england_and_wales(year: i16) -> Vec<BankHoliday> {
    let mut out: Vec<(Option<Date>, String)> = Vec::new();
    let day = |m: i8, d: i8| Date::new(year, m, d).ok();

    // New Year's Day; on a weekend, the following Monday.
    if let Some(new_year) = day(1, 1) {
        match new_year.weekday() {
            Weekday::Saturday => out.push((day(1, 3), "New Year’s Day (substitute day)".into())),
            Weekday::Sunday => out.push((day(1, 2), "New Year’s Day (substitute day)".into())),
            _ => out.push((Some(new_year), "New Year’s Day".into())),
        }
    }

    if let Some(easter) = easter_sunday(year) {
        out.push((easter.checked_sub(2.days()).ok(), "Good Friday".into()));
        out.push((easter.checked_add(1.days()).ok(), "Easter Monday".into()));
    }
    out.push((early_may(year), "Early May bank holiday".into()));
    out.push((spring(year), "Spring bank holiday".into()));
    let august = day(8, 1).and_then(|d| d.nth_weekday_of_month(-1, Weekday::Monday).ok());
    out.push((august, "Summer bank holiday".into()));

    // Christmas and Boxing Day. A holiday on a weekend moves to the next weekday that is not
    // already a holiday, which gives these four cases.
    if let Some(christmas) = day(12, 25) {
        let (c, b) = ("Christmas Day".to_string(), "Boxing Day".to_string());
        let sub = |s: &str| format!("{s} (substitute day)");
        match christmas.weekday() {
            Weekday::Friday => {
                out.push((day(12, 25), c));
                out.push((day(12, 28), sub(&b)));
            }
            Weekday::Saturday => {
                out.push((day(12, 27), sub(&c)));
                out.push((day(12, 28), sub(&b)));
            }
            Weekday::Sunday => {
                out.push((day(12, 26), b));
                out.push((day(12, 27), sub(&c)));
            }
            _ => {
                out.push((day(12, 25), c));
                out.push((day(12, 26), b));
            }
        }
    }

    for (date, title) in PROCLAIMED {
        if date.year() == year {
            out.push((Some(*date), (*title).to_string()));
        }
    }

    let mut list: Vec<BankHoliday> = out
        .into_iter()
        .filter_map(|(date, title)| date.map(|date| BankHoliday { date, title }))
        .collect();
    list.sort_by_key(|h| h.date);
    list.dedup_by_key(|h| h.date);
    list
}

/// A deadline the home owes after something happened, in the words the rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// "Within N working days" (RM4: 1 working day to tell the social worker).
    WorkingDays(u32),
    /// "Within N hours": plain clock hours (Regulation 35: the record in 24, sign-off in 48).
    Hours(u32),
    /// "Within N days": calendar days, weekends and holidays included (Regulation 35: the
    /// child spoken to within 5 days).
    Days(u32),
}

impl Deadline {
    /// When this deadline falls for something that happened at `start`, in a home whose
    /// clocks follow `tz`.
    ///
    /// - `WorkingDays(n)`: see [`add_working_days`].
    /// - `Hours(n)`: exactly `n` hours of elapsed time after `start`. A clock change does not
    ///   stretch or shrink it: the regulation counts hours, and a child's 24 hours are 24 hours.
    /// - `Days(n)`: the same local clock time `n` calendar days later (so a measure at 14:00 on
    ///   Monday is due by 14:00 on Saturday, whether or not the clocks changed in between).
    ///   A local time that does not exist that day (the spring gap) moves forward past the gap.
    ///
    /// Never panics; a deadline beyond the year 9999 is given as the last instant jiff holds.
    pub fn due(&self, start: Timestamp, tz: &TimeZone, holidays: &BankHolidays) -> Timestamp {
        match *self {
            Deadline::WorkingDays(n) => add_working_days(start, n, tz, holidays),
            Deadline::Hours(n) => start
                .checked_add(SignedDuration::from_hours(i64::from(n)))
                .unwrap_or(Timestamp::MAX),
            // `try_days`, not `days()`: the latter panics on a count beyond jiff's range.
            Deadline::Days(n) => Span::new()
                .try_days(i64::from(n))
                .and_then(|span| start.to_zoned(tz.clone()).checked_add(span))
                .map(|z| z.timestamp())
                .unwrap_or(Timestamp::MAX),
        }
    }
}

/// The deadline for something due "within `n` working days" of `start`: the **end of the
/// `n`th working day after the day of the event**, in the home's time zone — the last
/// millisecond of that day (23:59:59.999 local).
///
/// Why this reading: domain.md and RM4 count *working days*, which are calendar dates, not
/// 24-hour periods. As the law usually reckons a period, the day of the event itself is not
/// counted and the period runs to the end of its last day. So a lockdown at 02:00 on a Tuesday
/// gives the whole of Wednesday to reach the social worker (not until 02:00 Wednesday, when
/// no office is open), and one at 17:00 on a Friday is due by the end of Monday. An event on a
/// weekend or holiday counts from that day the same way: Saturday → end of Monday.
///
/// `n == 0` means by the end of the day of the event if that is a working day, otherwise by
/// the end of the next working day. Never panics; a deadline beyond the year 9999 is given as
/// the last instant jiff holds.
pub fn add_working_days(
    start: Timestamp,
    n: u32,
    tz: &TimeZone,
    holidays: &BankHolidays,
) -> Timestamp {
    let event_day = start.to_zoned(tz.clone()).date();
    let mut cache: Option<(i16, BTreeSet<Date>)> = None;
    let mut is_working = |d: Date| -> bool {
        if is_weekend(d) {
            return false;
        }
        let year = d.year();
        let dates = match &cache {
            Some((y, dates)) if *y == year => dates,
            _ => &cache.insert((year, holidays.dates_in_year(year))).1,
        };
        !dates.contains(&d)
    };

    let mut day = event_day;
    let mut counted = 0u32;
    if n == 0 {
        while !is_working(day) {
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => return Timestamp::MAX,
            }
        }
    } else {
        while counted < n {
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => return Timestamp::MAX,
            }
            if is_working(day) {
                counted += 1;
            }
        }
    }
    end_of_day(day, tz)
}

/// The last millisecond of `day` in `tz`: one millisecond before the next day starts there.
/// Milliseconds, because Haven stores times as Unix milliseconds and a deadline must round-trip.
fn end_of_day(day: Date, tz: &TimeZone) -> Timestamp {
    day.tomorrow()
        .and_then(|next| next.to_zoned(tz.clone()))
        .and_then(|z| z.start_of_day())
        .and_then(|z| z.timestamp().checked_sub(SignedDuration::from_millis(1)))
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn london() -> TimeZone {
        TimeZone::get(DEFAULT_HOME_TIME_ZONE).expect("Europe/London is in the tz database")
    }

    /// A local time in London, e.g. `at("2024-03-29T17:00")`.
    fn at(local: &str) -> Timestamp {
        let dt: jiff::civil::DateTime = local.parse().expect("test datetime");
        dt.to_zoned(london()).expect("exists in London").timestamp()
    }

    fn ts(rfc3339: &str) -> Timestamp {
        rfc3339.parse().expect("test timestamp")
    }

    fn date(s: &str) -> Date {
        s.parse().expect("test date")
    }

    fn due_1(local: &str) -> Timestamp {
        add_working_days(at(local), 1, &london(), &BankHolidays::england_and_wales())
    }

    fn dates(year: i16) -> Vec<String> {
        BankHolidays::england_and_wales()
            .in_year(year)
            .iter()
            .map(|h| h.date.to_string())
            .collect()
    }

    #[test]
    fn easter_sunday_matches_known_dates() {
        for (year, want) in [
            (1943, "1943-04-25"),
            (2000, "2000-04-23"),
            (2008, "2008-03-23"),
            (2011, "2011-04-24"),
            (2019, "2019-04-21"),
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2038, "2038-04-25"),
            (2285, "2285-03-22"),
        ] {
            assert_eq!(easter_sunday(year), Some(date(want)), "Easter {year}");
        }
    }

    /// The computed calendar against GOV.UK's published England and Wales lists.
    #[test]
    fn rm4_computed_holidays_match_the_published_lists() {
        let cases: &[(i16, &[&str])] = &[
            (
                1995,
                &[
                    "01-02", "04-14", "04-17", "05-08", "05-29", "08-28", "12-25", "12-26",
                ],
            ),
            (
                1999,
                &[
                    "01-01", "04-02", "04-05", "05-03", "05-31", "08-30", "12-27", "12-28", "12-31",
                ],
            ),
            (
                2002,
                &[
                    "01-01", "03-29", "04-01", "05-06", "06-03", "06-04", "08-26", "12-25", "12-26",
                ],
            ),
            (
                2011,
                &[
                    "01-03", "04-22", "04-25", "04-29", "05-02", "05-30", "08-29", "12-26", "12-27",
                ],
            ),
            (
                2012,
                &[
                    "01-02", "04-06", "04-09", "05-07", "06-04", "06-05", "08-27", "12-25", "12-26",
                ],
            ),
            (
                2018,
                &[
                    "01-01", "03-30", "04-02", "05-07", "05-28", "08-27", "12-25", "12-26",
                ],
            ),
            (
                2019,
                &[
                    "01-01", "04-19", "04-22", "05-06", "05-27", "08-26", "12-25", "12-26",
                ],
            ),
            (
                2020,
                &[
                    "01-01", "04-10", "04-13", "05-08", "05-25", "08-31", "12-25", "12-28",
                ],
            ),
            (
                2021,
                &[
                    "01-01", "04-02", "04-05", "05-03", "05-31", "08-30", "12-27", "12-28",
                ],
            ),
            (
                2022,
                &[
                    "01-03", "04-15", "04-18", "05-02", "06-02", "06-03", "08-29", "09-19",
                    "12-26", "12-27",
                ],
            ),
            (
                2023,
                &[
                    "01-02", "04-07", "04-10", "05-01", "05-08", "05-29", "08-28", "12-25", "12-26",
                ],
            ),
            (
                2024,
                &[
                    "01-01", "03-29", "04-01", "05-06", "05-27", "08-26", "12-25", "12-26",
                ],
            ),
            (
                2025,
                &[
                    "01-01", "04-18", "04-21", "05-05", "05-26", "08-25", "12-25", "12-26",
                ],
            ),
            (
                2026,
                &[
                    "01-01", "04-03", "04-06", "05-04", "05-25", "08-31", "12-25", "12-28",
                ],
            ),
            (
                2027,
                &[
                    "01-01", "03-26", "03-29", "05-03", "05-31", "08-30", "12-27", "12-28",
                ],
            ),
        ];
        for (year, want) in cases {
            let want: Vec<String> = want.iter().map(|md| format!("{year}-{md}")).collect();
            assert_eq!(dates(*year), want, "bank holidays of {year}");
        }
    }

    // clause RM4
    #[test]
    fn rm4_friday_evening_is_due_by_the_end_of_monday() {
        assert_eq!(due_1("2024-06-14T17:00"), at("2024-06-17T23:59:59.999"));
        // A weekday event: the end of the next day, not 24 hours later.
        assert_eq!(due_1("2024-06-11T02:00"), at("2024-06-12T23:59:59.999"));
        // A weekend event counts from the weekend: Saturday → end of Monday.
        assert_eq!(due_1("2024-06-15T10:00"), at("2024-06-17T23:59:59.999"));
        assert_eq!(due_1("2024-06-16T23:30"), at("2024-06-17T23:59:59.999"));
    }

    // clause RM4
    #[test]
    fn rm4_the_thursday_before_easter_is_due_on_the_tuesday_after() {
        // Easter 2025 is 20 April: Good Friday 18, Easter Monday 21.
        assert_eq!(due_1("2025-04-17T09:00"), at("2025-04-22T23:59:59.999"));
    }

    // clause RM4
    #[test]
    fn rm4_christmas_substitute_days_are_skipped() {
        // 2021: Christmas on a Saturday → Monday 27 and Tuesday 28 are holidays.
        let h = BankHolidays::england_and_wales();
        assert!(!h.is_working_day(date("2021-12-27")));
        assert!(!h.is_working_day(date("2021-12-28")));
        assert_eq!(due_1("2021-12-24T15:00"), at("2021-12-29T23:59:59.999"));
        // 2022: Christmas on a Sunday → Boxing Day Monday 26, substitute Tuesday 27.
        assert!(!h.is_working_day(date("2022-12-26")));
        assert!(!h.is_working_day(date("2022-12-27")));
        assert_eq!(due_1("2022-12-23T20:00"), at("2022-12-28T23:59:59.999"));
        // 2026: Christmas on a Friday → Boxing Day substitute Monday 28.
        assert_eq!(due_1("2026-12-24T12:00"), at("2026-12-29T23:59:59.999"));
    }

    // clause RM4
    #[test]
    fn rm4_one_off_holidays_are_skipped() {
        // The coronation of King Charles III, Monday 8 May 2023.
        assert_eq!(due_1("2023-05-05T16:00"), at("2023-05-09T23:59:59.999"));
        // The State Funeral of Queen Elizabeth II, Monday 19 September 2022.
        assert_eq!(due_1("2022-09-16T16:00"), at("2022-09-20T23:59:59.999"));
        // The platinum jubilee: Thursday 2 and Friday 3 June 2022.
        assert_eq!(due_1("2022-06-01T11:00"), at("2022-06-06T23:59:59.999"));
    }

    // clause RM4
    #[test]
    fn rm4_new_year_on_a_saturday_gives_monday_off() {
        assert!(!BankHolidays::england_and_wales().is_working_day(date("2022-01-03")));
        assert_eq!(due_1("2021-12-31T18:00"), at("2022-01-04T23:59:59.999"));
    }

    // clause RM4
    #[test]
    fn rm4_deadlines_follow_the_clocks_changing() {
        // Late Saturday 30 March 2024 (GMT); clocks go forward early Sunday 31 March, which is
        // also Easter Day; Monday 1 April is Easter Monday. Due end of Tuesday 2 April, BST.
        let start = ts("2024-03-30T23:30:00Z");
        let due = add_working_days(start, 1, &london(), &BankHolidays::england_and_wales());
        assert_eq!(due, ts("2024-04-02T22:59:59.999Z"));
        // Clocks go back Sunday 27 October 2024: an event in BST, due at the end of Monday in GMT.
        let due = due_1("2024-10-26T21:00");
        assert_eq!(due, ts("2024-10-28T23:59:59.999Z"));
    }

    /// The workspace enables jiff's bundled tz database, so a machine without
    /// /usr/share/zoneinfo still knows London's clock changes (jiff uses it as a fallback).
    #[test]
    fn rm4_the_bundled_tz_database_knows_london() {
        let tz = jiff::tz::TimeZoneDatabase::bundled()
            .get(DEFAULT_HOME_TIME_ZONE)
            .expect("bundled tzdb has Europe/London");
        let due = add_working_days(
            ts("2024-03-30T23:30:00Z"),
            1,
            &tz,
            &BankHolidays::england_and_wales(),
        );
        assert_eq!(due, ts("2024-04-02T22:59:59.999Z"));
    }

    // clause RM4
    #[test]
    fn rm4_a_published_file_replaces_the_years_it_covers() {
        let text = include_str!("../../tests-data/bank-holidays-corrected.json");
        let h = BankHolidays::with_corrections_from_json(text).expect("fixture parses");
        assert_eq!(h.corrected_years(), vec![2031]);
        // The made-up proclaimed holiday, Friday 4 July 2031, is honoured…
        assert!(h.is_bank_holiday(date("2031-07-04")));
        let start = at("2031-07-03T10:00");
        assert_eq!(
            add_working_days(start, 1, &london(), &h),
            at("2031-07-07T23:59:59.999")
        );
        // …and the file is the whole truth for 2031: the computed summer holiday it omits
        // (Monday 25 August) is a working day.
        assert!(h.is_working_day(date("2031-08-25")));
        assert!(!BankHolidays::england_and_wales().is_working_day(date("2031-08-25")));
        // Other years still come from the rules.
        assert_eq!(
            h.in_year(2030),
            BankHolidays::england_and_wales().in_year(2030)
        );
        let names: Vec<String> = h.in_year(2031).into_iter().map(|x| x.title).collect();
        assert!(names.contains(&"Example proclaimed holiday".to_string()));
    }

    // clause RM4
    #[test]
    fn rm4_a_malformed_file_is_refused_in_one_plain_line() {
        let cases = [
            ("not json", "not in the government's format"),
            ("{\"scotland\": {\"events\": []}}", "england-and-wales"),
            (
                "{\"england-and-wales\": {\"events\": [\n {\"title\": \"X\"}\n]}}",
                "missing field `date` at line 2",
            ),
            (
                "{\"england-and-wales\": {\"events\": [{\"title\": \"X\", \"date\": 20240101}]}}",
                "invalid type",
            ),
            (
                "{\"england-and-wales\": {\"events\": []}}",
                "lists no England and Wales",
            ),
            (
                "{\"england-and-wales\": {\"events\": [{\"title\": \"A\", \"date\": \"2024-01-01\"}, {\"title\": \"B\", \"date\": \"2024-02-30\"}]}}",
                "event 2 of \"england-and-wales\" (\"B\") has the date \"2024-02-30\"",
            ),
            (
                "{\"england-and-wales\": {\"events\": [{\"title\": \"A\", \"date\": \"1/1/2024\"}]}}",
                "written YYYY-MM-DD",
            ),
        ];
        for (text, want) in cases {
            let err = BankHolidays::with_corrections_from_json(text)
                .expect_err("malformed file is refused")
                .to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    #[test]
    fn rm5_hours_are_clock_hours_and_days_are_calendar_days() {
        let h = BankHolidays::england_and_wales();
        let tz = london();
        // 24 hours across the spring clock change: 24 elapsed hours, so an hour later on the
        // clock (12:00 GMT Saturday → 13:00 BST Sunday).
        let start = at("2024-03-30T12:00");
        assert_eq!(
            Deadline::Hours(24).due(start, &tz, &h),
            at("2024-03-31T13:00")
        );
        assert_eq!(
            Deadline::Hours(48).due(start, &tz, &h),
            ts("2024-04-01T12:00:00Z")
        );
        // 5 calendar days: same local time, weekends and Easter Monday included.
        assert_eq!(
            Deadline::Days(5).due(start, &tz, &h),
            at("2024-04-04T12:00")
        );
        assert_eq!(
            Deadline::WorkingDays(1).due(start, &tz, &h),
            at("2024-04-02T23:59:59.999")
        );
    }

    #[test]
    fn rm4_zero_working_days_is_the_end_of_the_day_or_the_next_working_day() {
        let h = BankHolidays::england_and_wales();
        let tz = london();
        assert_eq!(
            add_working_days(at("2024-06-12T09:00"), 0, &tz, &h),
            at("2024-06-12T23:59:59.999")
        );
        assert_eq!(
            add_working_days(at("2024-06-15T09:00"), 0, &tz, &h),
            at("2024-06-17T23:59:59.999")
        );
    }

    #[test]
    fn huge_deadlines_do_not_panic() {
        let h = BankHolidays::england_and_wales();
        let tz = london();
        let start = ts("9999-12-01T00:00:00Z");
        assert_eq!(add_working_days(start, 100, &tz, &h), Timestamp::MAX);
        assert_eq!(Deadline::Days(u32::MAX).due(start, &tz, &h), Timestamp::MAX);
        assert_eq!(
            Deadline::Hours(u32::MAX).due(start, &tz, &h),
            Timestamp::MAX
        );
    }

    proptest! {
        // clause RM4
        #[test]
        fn rm4_a_working_day_deadline_is_after_the_start_and_on_a_working_day(
            secs in 0i64..4_102_444_800, // 1970 to 2100
            n in 1u32..=20,
        ) {
            let h = BankHolidays::england_and_wales();
            let tz = london();
            let start = Timestamp::from_second(secs).expect("in range");
            let due = Deadline::WorkingDays(n).due(start, &tz, &h);
            prop_assert!(due > start);
            let local = due.to_zoned(tz.clone());
            prop_assert!(h.is_working_day(local.date()));
            prop_assert_eq!(
                (local.hour(), local.minute(), local.second(), local.millisecond()),
                (23, 59, 59, 999)
            );
            // Exactly n working days lie after the event's day, up to and including the due day.
            let mut d = start.to_zoned(tz.clone()).date();
            let mut count = 0;
            while d < local.date() {
                d = d.tomorrow().expect("in range");
                if h.is_working_day(d) {
                    count += 1;
                }
            }
            prop_assert_eq!(count, n);
        }
    }
}

#[cfg(test)]
#[path = "working_days_fuzz.rs"]
mod fuzz;
