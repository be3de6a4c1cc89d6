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

/// One violation as scripts read it (`--json`): the contract other tools rely on.
#[derive(Debug, Serialize)]
pub struct ViolationJson {
    pub id: String,
    pub device_id: String,
    pub child_id: String,
    pub child_name: String,
    pub kind: String,
    pub subject: String,
    pub detail: String,
    pub channel: String,
    pub occurred_at: String,
    pub received_at: String,
    pub description: String,
}

/// A stored time as RFC 3339 in UTC, e.g. `2026-11-28T06:31:00.123Z`.
pub fn rfc3339(unix_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl From<api::ViolationRecord> for ViolationJson {
    fn from(v: api::ViolationRecord) -> Self {
        ViolationJson {
            occurred_at: rfc3339(v.occurred_at_unix_ms),
            received_at: rfc3339(v.received_at_unix_ms),
            id: v.id,
            device_id: v.device_id,
            child_id: v.child_id,
            child_name: v.child_name,
            kind: shown::<api::ViolationKind>(v.violation_kind, &v.kind),
            subject: v.subject,
            detail: v.detail,
            channel: shown::<api::ContactChannel>(v.contact_channel, &v.channel),
            description: v.description,
        }
    }
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
        return list.map(ViolationJson::from).print_json("violations");
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
            let mut value = serde_json::to_value(ViolationJson::from(v))?;
            value["event"] = "violation".into();
            value.to_string()
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
            serde_json::json!({
                "event": "not-reporting",
                "device_id": n.device_id,
                "child_id": n.child_id,
                "child_name": n.child_name,
                "last_seen_at": if n.last_seen_at_unix_ms > 0 { rfc3339(n.last_seen_at_unix_ms) } else { String::new() },
                "silent_for_secs": n.silent_for_secs,
                "message": n.message,
            })
            .to_string()
        } else {
            format!("NOT REPORTING  {}", n.message)
        }
    } else if let Some(t) = e.task {
        if as_json {
            let mut value = serde_json::to_value(task_json(&t))?;
            value["event"] = "task".into();
            value.to_string()
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

#[derive(Debug, Serialize)]
struct TaskJson<'a> {
    id: &'a str,
    child_id: &'a str,
    child_name: &'a str,
    kind: String,
    address: &'a str,
    channel: String,
    summary: &'a str,
    attempts: u64,
    first_attempt_at: String,
    last_attempt_at: String,
    opened_at: String,
    closed_at: Option<String>,
    closed_by: &'a str,
    note: &'a str,
    due_at: String,
    state: String,
    decision: String,
}

fn task_json(t: &api::ManagerTask) -> TaskJson<'_> {
    TaskJson {
        id: &t.id,
        child_id: &t.child_id,
        child_name: &t.child_name,
        kind: shown::<api::ManagerTaskKind>(t.task_kind, &t.kind),
        address: &t.address,
        channel: shown::<api::ContactChannel>(t.contact_channel, &t.channel),
        summary: &t.summary,
        attempts: t.attempts,
        first_attempt_at: rfc3339(t.first_attempt_at_unix_ms),
        last_attempt_at: rfc3339(t.last_attempt_at_unix_ms),
        opened_at: rfc3339(t.opened_at_unix_ms),
        closed_at: (t.closed_at_unix_ms > 0).then(|| rfc3339(t.closed_at_unix_ms)),
        closed_by: &t.closed_by,
        note: &t.note,
        due_at: rfc3339(t.due_at_unix_ms),
        state: shown::<api::ObligationState>(t.task_state, &t.state),
        decision: shown::<api::TaskDecision>(t.task_decision, &t.decision),
    }
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
                return json(&task_json(&t));
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
        let out = super::pages::Fetched {
            items: list.items.iter().map(task_json).collect::<Vec<_>>(),
            next_page_token: list.next_page_token.clone(),
            by_hand: list.by_hand,
        };
        return out.print_json("tasks");
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

    #[test]
    fn json_times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }
}
