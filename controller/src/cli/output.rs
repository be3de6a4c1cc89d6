//! How the command line shows records: tables for people, JSON for scripts.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// Prints a value as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    println!("{t}");
}

/// "2026-11-28 06:31 (4 min ago)" in the local time zone; "never" for zero.
pub fn when(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "never".into();
    }
    let Ok(ts) = jiff::Timestamp::from_millisecond(unix_ms) else {
        return "unknown".into();
    };
    let local = ts.to_zoned(jiff::tz::TimeZone::system());
    let ago = (jiff::Timestamp::now().as_millisecond() - unix_ms) / 1000;
    let rel = match ago {
        i64::MIN..=-60 => format!("in {}", human_secs(-ago)),
        -59..=9 => "just now".into(),
        _ => format!("{} ago", human_secs(ago)),
    };
    format!("{} ({rel})", local.strftime("%Y-%m-%d %H:%M"))
}

fn human_secs(s: i64) -> String {
    match s {
        ..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

pub fn bytes(n: u64) -> String {
    const GB: f64 = 1024.0 * 1024.0 * 1024.0;
    if n == 0 {
        return "-".into();
    }
    format!("{:.1} GB", n as f64 / GB)
}

/// Reads "30m", "24h", "2d" or a bare number of minutes.
pub fn parse_minutes(text: &str) -> Result<u32, String> {
    let t = text.trim().to_ascii_lowercase();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u32 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a length of time: use e.g. 30m, 24h or 2d"))?;
    let factor = match unit.trim() {
        "" | "m" | "min" | "mins" | "minutes" => 1,
        "h" | "hour" | "hours" => 60,
        "d" | "day" | "days" => 24 * 60,
        _ => {
            return Err(format!(
                "{text:?} is not a length of time: use e.g. 30m, 24h or 2d"
            ));
        }
    };
    if n == 0 {
        return Err(format!(
            "{text:?} is no time at all: use e.g. 30m, 24h or 2d"
        ));
    }
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_time_read_as_people_write_them() {
        assert_eq!(parse_minutes("30m"), Ok(30));
        assert_eq!(parse_minutes("24h"), Ok(1440));
        assert_eq!(parse_minutes("2d"), Ok(2880));
        assert_eq!(parse_minutes("45"), Ok(45));
        assert!(parse_minutes("soon").is_err());
        assert!(parse_minutes("3w").is_err());
        assert!(parse_minutes("0m").is_err());
    }

    #[test]
    fn zero_times_read_as_never() {
        assert_eq!(when(0), "never");
        assert!(when(jiff::Timestamp::now().as_millisecond()).contains("just now"));
    }
}
