//! Fuzz harness for the bank-holidays JSON (issue 13): whatever the configured file holds, the
//! controller either refuses it whole with words saying what to do, or reads it and every
//! deadline it then counts is a time jiff can hold. No panic either way.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::fuzzing::{self, JSON_TOKENS, bytes_from};

fn seeds() -> Vec<Vec<u8>> {
    [
        r#"{"england-and-wales":{"division":"england-and-wales","events":[
            {"title":"New Year’s Day","date":"2027-01-01","notes":"","bunting":true},
            {"title":"Good Friday","date":"2027-03-26","notes":"","bunting":false},
            {"title":"Christmas Day","date":"2027-12-27","notes":"Substitute day","bunting":true}]},
          "scotland":{"division":"scotland","events":[{"title":"St Andrew’s Day","date":"2027-11-30"}]}}"#,
        r#"{"england-and-wales":{"events":[{"title":"x","date":"9999-12-31"},{"title":"y","date":"-0001-01-01"}]}}"#,
        r#"{"england-and-wales":{"events":[{"title":"Leap","date":"2028-02-29"},{"title":"Leap","date":"2028-02-29"}]}}"#,
        r#"{"england-and-wales":{"events":[]}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

// issue 13: the bank-holidays file is read or refused clearly, never a panic.
#[test]
fn fuzz_bank_holidays_json() {
    let inputs = (
        bytes_from(seeds(), JSON_TOKENS, 300),
        -10_000_000_000_000i64..300_000_000_000_000,
        0u32..40,
    );
    fuzzing::run("bank holidays", inputs, |(input, at, n)| {
        let text = String::from_utf8_lossy(&input);
        match BankHolidays::with_corrections_from_json(&text) {
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.contains("download") || message.contains("correct"),
                    "{message}"
                );
            }
            Ok(holidays) => {
                let tz = TimeZone::get("Europe/London")
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let start = Timestamp::from_millisecond(at).unwrap_or(Timestamp::UNIX_EPOCH);
                for year in holidays.corrected_years() {
                    let listed = holidays.in_year(year);
                    prop_assert!(listed.windows(2).all(|w| w[0].date < w[1].date));
                }
                for deadline in [
                    Deadline::WorkingDays(n),
                    Deadline::Hours(n),
                    Deadline::Days(n),
                ] {
                    let due = deadline.due(start, &tz, &holidays);
                    prop_assert!(due >= start);
                }
            }
        }
        Ok(())
    });
}
