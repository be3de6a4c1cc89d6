//! `haven violations` and `haven tasks`: what children's devices blocked (listed, filtered,
//! or watched live), and the manager tasks attempts to reach unknown contacts open.

// Records from an older controller carry only the deprecated words fields; `shown` falls back
// to them.
#![allow(deprecated)]

use anyhow::anyhow;
use haven_proto::admin::v1 as api;
use serde::Serialize;

use super::Intercepted;
use super::client::explain;
use super::output::{json, table, when};
use crate::service::wire_enums::{shown, typed};

type Client = api::violation_service_client::ViolationServiceClient<Intercepted>;

#[derive(Debug, clap::Args)]
pub struct ViolationsArgs {
    /// Only this child's (id or name).
    #[arg(long)]
    child: Option<String>,
    /// Only this device's (id).
    #[arg(long)]
    device: Option<String>,
    /// Only this kind: app-blocked, camera-blocked, contact-blocked, unknown-contact,
    /// web-blocked, tampering, journal-overflow.
    #[arg(long)]
    kind: Option<String>,
    /// Only since this time: 2026-11-28, "2026-11-28 06:00", an RFC 3339 time, or a length of
    /// time ago such as 30m, 2h or 3d.
    #[arg(long)]
    since: Option<String>,
    /// At most this many (newest first) [default: all of them].
    #[arg(long)]
    limit: Option<u32>,
    #[command(flatten)]
    pages: super::pages::PageArgs,
    /// Keep watching: show each violation as the controller receives it, and devices that
    /// stop reporting, until Ctrl-C.
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    #[command(subcommand)]
    command: Option<TasksCommand>,
    /// Only this child's tasks.
    #[arg(long)]
    child: Option<String>,
    /// Closed tasks too.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    pages: super::pages::PageArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// List open manager tasks (the default).
    List {
        #[arg(long)]
        child: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// A manager records what was done and closes a task.
    Close {
        id: String,
        /// What you decided: assess (a full risk assessment with the social worker), refuse,
        /// or no-action.
        #[arg(long, default_value = "")]
        decision: String,
        #[arg(long)]
        note: String,
    },
}

/// Reads `--since`: a length of time ago, a date or date and time in this computer's time
/// zone, or an RFC 3339 time. Returns milliseconds since the epoch.
pub fn parse_since(text: &str, now: jiff::Zoned) -> Result<i64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{t:?} is not a time: use e.g. 2h (two hours ago), 2026-11-28, \"2026-11-28 06:00\" or 2026-11-28T06:00:00Z"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    if t.chars().next().is_some_and(|c| c.is_ascii_digit())
        && let Ok(minutes) = super::output::parse_minutes(t)
        && !t.contains('-')
    {
        let ago = jiff::SignedDuration::from_mins(i64::from(minutes));
        return now
            .timestamp()
            .checked_sub(ago)
            .map(|ts| ts.as_millisecond())
            .map_err(|_| bad());
    }
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let tz = now.time_zone().clone();
    if let Ok(dt) = t.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        return dt
            .to_zoned(tz)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|_| bad());
    }
    if let Ok(d) = t.parse::<jiff::civil::Date>() {
        return d
            .to_zoned(tz)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|_| bad());
    }
    Err(bad())
}

pub async fn violations(c: &mut Client, args: ViolationsArgs, as_json: bool) -> anyhow::Result<()> {
    let since_unix_ms = match &args.since {
        Some(text) => parse_since(text, jiff::Zoned::now()).map_err(|e| anyhow!(e))?,
        None => 0,
    };
    if args.limit == Some(0) {
        return Err(anyhow!(
            "--limit 0 would show nothing: give a number of 1 or more"
        ));
    }
    let filter = api::ViolationFilter {
        child: args.child.unwrap_or_default(),
        device: args.device.unwrap_or_default(),
        violation_kind: typed::<api::ViolationKind>(args.kind.as_deref().unwrap_or_default()).0,
        kind: typed::<api::ViolationKind>(args.kind.as_deref().unwrap_or_default()).1,
        since_unix_ms,
        since: crate::service::convert::at(since_unix_ms),
    };
    if args.watch {
        return watch(c, filter, as_json).await;
    }
    let list = super::pages::fetch(&args.pages, args.limit, |page_size, page_token| {
        let mut client = c.clone();
        let request = api::ListViolationsRequest {
            filter: Some(filter.clone()),
            page_size,
            page_token,
            ..Default::default()
        };
        async move {
            let r = client.list_violations(request).await?.into_inner();
            Ok((r.violations, r.next_page_token))
        }
    })
    .await?;
    if as_json {
        // Proto3's canonical JSON of each record, as every other language's client prints it
        // (the older script fields — kind, channel, occurred_at, received_at as RFC 3339 — are
        // all still there, under the same names, beside the enums and the rest).
        return list.print_json("violations");
    }
    list.print_next();
    let list = list.items;
    table(
        &["when", "child", "what happened", "device", "kind"],
        list.into_iter()
            .map(|v| {
                let kind = shown::<api::ViolationKind>(v.violation_kind, &v.kind);
                vec![
                    when(v.occurred_at_unix_ms),
                    v.child_name,
                    v.description,
                    v.device_id,
                    kind,
                ]
            })
            .collect(),
    );
    Ok(())
}

async fn watch(c: &mut Client, filter: api::ViolationFilter, as_json: bool) -> anyhow::Result<()> {
    let mut stream = c
        .watch_violations(api::WatchViolationsRequest {
            filter: Some(filter),
        })
        .await
        .map_err(explain)?
        .into_inner();
    // Said on standard error so `--json` output stays one object a line.
    eprintln!("Watching for violations as they arrive (Ctrl-C to stop)…");
    loop {
        let next = tokio::select! {
            next = stream.message() => next.map_err(explain)?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(event) = next else {
            return Err(anyhow!(
                "the controller ended the watch (it may be restarting): run the command again"
            ));
        };
        print_event(event, as_json)?;
    }
}

fn print_event(e: api::ViolationEvent, as_json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let line = if let Some(v) = e.violation {
        if as_json {
            event_json("violation", &v)?
        } else {
            format!(
                "{}  {} {}  (device {}, {})",
                when(v.occurred_at_unix_ms),
                v.child_name,
                v.description,
                v.device_id,
                shown::<api::ViolationKind>(v.violation_kind, &v.kind)
            )
        }
    } else if let Some(n) = e.not_reporting {
        if as_json {
            event_json("not-reporting", &n)?
        } else {
            format!("NOT REPORTING  {}", n.message)
        }
    } else if let Some(t) = e.task {
        if as_json {
            event_json("task", &t)?
        } else {
            format!(
                "MANAGER TASK {}  {} ({} attempt{})",
                t.id,
                t.summary,
                t.attempts,
                if t.attempts == 1 { "" } else { "s" }
            )
        }
    } else if e.missed > 0 {
        if as_json {
            serde_json::json!({ "event": "missed", "count": e.missed }).to_string()
        } else {
            format!(
                "(this watch fell behind and missed {} events: `haven violations` lists them)",
                e.missed
            )
        }
    } else {
        return Ok(());
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    // Each line as it happens, even when the output is a pipe.
    out.flush()?;
    Ok(())
}

/// One line of `haven violations --watch --json`: the record's canonical JSON and what it is.
fn event_json(event: &str, record: &impl Serialize) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(record)?;
    value["event"] = event.into();
    Ok(value.to_string())
}

pub async fn tasks(c: &mut Client, args: TasksArgs, as_json: bool) -> anyhow::Result<()> {
    let (child, all) = match args.command {
        Some(TasksCommand::Close { id, decision, note }) => {
            let t = c
                .close_manager_task(api::CloseManagerTaskRequest {
                    id,
                    note,
                    task_decision: typed::<api::TaskDecision>(&decision).0,
                    decision: typed::<api::TaskDecision>(&decision).1,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&t);
            }
            println!(
                "Closed task {} about {} ({}): {}.",
                t.id,
                t.child_name,
                t.address,
                shown::<api::TaskDecision>(t.task_decision, &t.decision)
            );
            return Ok(());
        }
        Some(TasksCommand::List { child, all }) => (child.or(args.child), all || args.all),
        None => (args.child, args.all),
    };
    let child = child.unwrap_or_default();
    let list = super::pages::fetch(&args.pages, None, |page_size, page_token| {
        let mut client = c.clone();
        let request = api::ListManagerTasksRequest {
            child: child.clone(),
            include_closed: all,
            page_size,
            page_token,
        };
        async move {
            let r = client.list_manager_tasks(request).await?.into_inner();
            Ok((r.tasks, r.next_page_token))
        }
    })
    .await?;
    if as_json {
        return list.print_json("tasks");
    }
    list.print_next();
    let list = list.items;
    table(
        &[
            "id",
            "child",
            "what to do",
            "attempts",
            "last attempt",
            "state",
        ],
        list.iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    t.child_name.clone(),
                    t.summary.clone(),
                    t.attempts.to_string(),
                    when(t.last_attempt_at_unix_ms),
                    if t.closed_at_unix_ms > 0 {
                        format!("closed: {}", t.note)
                    } else {
                        "open".into()
                    },
                ]
            })
            .collect(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_as_people_write_it() {
        let now: jiff::Zoned = "2026-11-28T10:00:00+00:00[Europe/London]".parse().unwrap();
        let at = |s: &str| parse_since(s, now.clone()).unwrap();
        let hour = 3_600_000;
        assert_eq!(at("2h"), now.timestamp().as_millisecond() - 2 * hour);
        assert_eq!(at("30m"), now.timestamp().as_millisecond() - hour / 2);
        assert_eq!(
            at("2026-11-28"),
            now.timestamp().as_millisecond() - 10 * hour
        );
        assert_eq!(
            at("2026-11-28 06:00"),
            now.timestamp().as_millisecond() - 4 * hour
        );
        assert_eq!(
            at("2026-11-28T09:00:00Z"),
            now.timestamp().as_millisecond() - hour
        );
        // Summer time: local 06:00 is 05:00 UTC.
        assert_eq!(
            at("2026-07-01 06:00"),
            "2026-07-01T05:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond()
        );
        for bad in ["", "yesterday-ish", "28/11/2026", "3w"] {
            assert!(parse_since(bad, now.clone()).is_err(), "{bad}");
        }
    }
}
