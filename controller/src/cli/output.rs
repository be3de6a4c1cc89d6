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

/// Reads a time as staff write it, relative to `now` (ms) and in the time zone `tz`:
/// RFC 3339 (`2026-11-28T07:00:00Z`), a date and time (`2026-11-28 07:00`), a time of day
/// (`07:00`: the next one), `in 2h` / `in 30m` / `in 1d`, `now`, or `20m ago`.
pub fn parse_time(text: &str, now: i64, tz: &jiff::tz::TimeZone) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    let help = || {
        format!(
            "{text:?} is not a time Haven can read: use e.g. \"in 2h\", \"07:00\", \"2026-11-28 07:00\" or 2026-11-28T07:00:00Z"
        )
    };
    if t == "now" {
        return Ok(now);
    }
    if let Some(rest) = t.strip_prefix("in ") {
        let minutes = parse_minutes(rest).map_err(|_| help())?;
        return Ok(now + i64::from(minutes) * 60_000);
    }
    if let Some(rest) = t.strip_suffix(" ago") {
        let minutes = parse_minutes(rest).map_err(|_| help())?;
        return Ok(now - i64::from(minutes) * 60_000);
    }
    if let Ok(ts) = text.trim().parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let civil = t.replace('t', " ");
    if let Ok(dt) = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", &civil) {
        return dt
            .to_zoned(tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|_| help());
    }
    if let Ok(time) = jiff::civil::Time::strptime("%H:%M", &civil) {
        let today = jiff::Timestamp::from_millisecond(now)
            .map_err(|_| help())?
            .to_zoned(tz.clone())
            .date();
        for date in [Some(today), today.tomorrow().ok()].into_iter().flatten() {
            let at = date
                .to_datetime(time)
                .to_zoned(tz.clone())
                .map_err(|_| help())?
                .timestamp()
                .as_millisecond();
            if at > now {
                return Ok(at);
            }
        }
    }
    Err(help())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_staff_write_them() {
        let tz = jiff::tz::TimeZone::get("Europe/London").unwrap();
        // Saturday 28 November 2026, 02:00 GMT.
        let now = "2026-11-28T02:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let at = |s: &str| parse_time(s, now, &tz).unwrap();
        assert_eq!(at("in 2h"), now + 2 * 3_600_000);
        assert_eq!(at("30m ago"), now - 30 * 60_000);
        assert_eq!(at("now"), now);
        assert_eq!(at("2026-11-28T07:00:00Z"), now + 5 * 3_600_000);
        assert_eq!(at("2026-11-28 07:00"), now + 5 * 3_600_000);
        assert_eq!(at("07:00"), now + 5 * 3_600_000);
        // A time of day already past today means tomorrow.
        assert_eq!(at("01:00"), now + 23 * 3_600_000);
        assert!(parse_time("soonish", now, &tz).is_err());
    }

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
