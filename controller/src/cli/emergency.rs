//! `haven lockdown`, `lift`, `lockdowns`, `obligations`, `notified`, `sanctions` and
//! `sanction …`: emergency action at 2 a.m. and everything the home owes after it.

// Records from an older controller carry only the deprecated words fields; `shown` falls back
// to them.
#![allow(deprecated)]

use anyhow::anyhow;
use futures::StreamExt;
use haven_proto::admin::v1 as api;

use super::Intercepted;
use super::client::explain;
use super::output::{json, parse_time, table, when};
use super::pages::{PageArgs, fetch};
use crate::service::convert::at;
use crate::service::wire_enums::{shown, shown_all, typed, typed_all};

type Client = api::emergency_service_client::EmergencyServiceClient<Intercepted>;

/// `haven lockdown`: what to withdraw, from whom, why and until when.
#[derive(Debug, clap::Args)]
pub struct LockdownArgs {
    /// The child (id or name). Or use --device or --home instead.
    pub child: Option<String>,
    /// Lock down one device only.
    #[arg(long, conflicts_with_all = ["child", "home"])]
    pub device: Option<String>,
    /// Lock down every child's devices in a home.
    #[arg(long, conflicts_with = "child")]
    pub home: Option<String>,
    /// Why: injury-to-child, injury-to-others, property-damage or prevent-offence. Never as
    /// a punishment.
    #[arg(long)]
    pub reason: String,
    /// What happened: it goes into the record.
    #[arg(long)]
    pub note: String,
    /// What to withdraw: calls, messages, web, camera, apps (comma separated) [default: all].
    /// Protected contacts stay reachable whatever is withdrawn.
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
    /// It ends by itself at this time: "in 2h", "07:00", "2026-11-28 07:00" or RFC 3339.
    #[arg(long, conflicts_with = "review")]
    pub until: Option<String>,
    /// It stays until lifted and must be reviewed by this time [default: in 24 hours].
    #[arg(long)]
    pub review: Option<String>,
    /// Ofsted was consulted: what it advised (RM6).
    #[arg(long)]
    pub ofsted_advice: Option<String>,
    /// How long to wait for online devices to confirm (0: do not wait).
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u32,
}

#[derive(Debug, clap::Subcommand)]
pub enum SanctionCommand {
    /// Complete the Regulation 35 record (due within 24 hours). Write "none" where there was
    /// none.
    Complete {
        id: String,
        /// The behaviour that led to it.
        #[arg(long)]
        behaviour: String,
        /// Where it happened.
        #[arg(long)]
        location: String,
        /// The steps taken to avoid it.
        #[arg(long)]
        steps: String,
        /// Who else was present.
        #[arg(long)]
        present: String,
        /// How effective it was, and any consequences.
        #[arg(long)]
        effectiveness: String,
        /// Any injury to anyone, and any medical treatment.
        #[arg(long)]
        injury: String,
    },
    /// The Registered Manager has spoken to the person who used it and signs the record as
    /// accurate (due within 48 hours; managers only).
    SignOff {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
        /// Whom you spoke to (the person who imposed the measure) and when: required (RM5).
        #[arg(long = "spoke-with", default_value = "")]
        spoke_with: String,
    },
    /// The child has been spoken to about it; record their views (due within 5 days).
    Discussed {
        id: String,
        /// What the child said about it, in their words where possible.
        #[arg(long)]
        views: String,
    },
}

fn local_tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::system()
}

fn time_arg(text: Option<&str>, now: i64) -> anyhow::Result<i64> {
    match text {
        None => Ok(0),
        Some(t) => parse_time(t, now, &local_tz()).map_err(|e| anyhow!(e)),
    }
}

/// `haven restrict`: letters or visits withdrawn in an emergency (S1, RM3).
#[derive(clap::Args, Debug)]
pub struct RestrictArgs {
    /// The child (name or id).
    pub child: String,
    /// What is withdrawn: letters, visits (repeat or separate with commas).
    #[arg(long = "channel", required = true)]
    pub channels: Vec<String>,
    /// injury-to-child, injury-to-others, property-damage or prevent-offence.
    #[arg(long)]
    pub reason: String,
    /// What happened: the evidence for it.
    #[arg(long, default_value = "")]
    pub note: String,
    /// When it ends by itself ("in 2h", "07:00", RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// When it must be reviewed, if it does not end by itself (default: in a day).
    #[arg(long)]
    pub review: Option<String>,
    /// What Ofsted advised, if consulted (RM6).
    #[arg(long = "ofsted-advice")]
    pub ofsted_advice: Option<String>,
}

pub async fn restrict(c: &mut Client, a: RestrictArgs, as_json: bool) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_millisecond();
    let (protective_reason, reason) = typed::<api::RestrictionReason>(&a.reason);
    let (restrict, arrangements) = typed_all::<api::CommunicationChannel>(&a.channels);
    let until = time_arg(a.until.as_deref(), now)?;
    let review = time_arg(a.review.as_deref(), now)?;
    let r = c
        .restrict(api::RestrictRequest {
            child: a.child,
            protective_reason,
            reason,
            restrict,
            arrangements,
            note: a.note,
            // Both forms of each time: a controller from before the Timestamps reads the ms.
            until_unix_ms: until,
            review_at_unix_ms: review,
            until: at(until),
            review_at: at(review),
            ofsted_advice: a.ofsted_advice.unwrap_or_default(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    if as_json {
        return json(&r);
    }
    let l = r.lockdown.unwrap_or_default();
    println!(
        "Restriction {} recorded for {}: {} withdrawn ({}).",
        l.id,
        l.child_name,
        withdrawn(&l),
        reason_of(&l)
    );
    if l.until_unix_ms > 0 {
        println!("It ends by itself at {}.", when(l.until_unix_ms));
    } else {
        println!(
            "It stays until lifted (`haven lift {}`); review it by {}.",
            l.id,
            when(l.review_at_unix_ms)
        );
    }
    for s in &r.sanctions {
        println!(
            "Sanction record {} opened: complete it with `haven sanction complete {}`.",
            s.id, s.id
        );
    }
    println!(
        "{} obligation(s) opened: see `haven obligations`.",
        r.obligations.len()
    );
    Ok(())
}

/// One line of progress: "3 of 4 devices locked; 1 offline — will lock on reconnect".
pub fn progress_line(p: &api::LockdownProgress) -> String {
    let mut line = format!(
        "{} of {} device{} locked",
        p.acknowledged,
        p.targeted,
        if p.targeted == 1 { "" } else { "s" }
    );
    if !p.waiting.is_empty() {
        line.push_str(&format!("; {} waiting", p.waiting.len()));
    }
    if p.offline > 0 {
        line.push_str(&format!("; {} offline — will lock on reconnect", p.offline));
    }
    if !p.failed.is_empty() {
        line.push_str(&format!(
            "; {} could not apply it ({})",
            p.failed.len(),
            p.failed.join(", ")
        ));
    }
    line
}

pub async fn lockdown(c: &mut Client, a: LockdownArgs, as_json: bool) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_millisecond();
    let until = time_arg(a.until.as_deref(), now)?;
    let review = time_arg(a.review.as_deref(), now)?;
    let (protective_reason, reason) = typed::<api::RestrictionReason>(&a.reason);
    let (withdraw, channels) = typed_all::<api::CommunicationChannel>(&a.channels);
    let r = c
        .lockdown(api::LockdownRequest {
            child: a.child.unwrap_or_default(),
            device: a.device.unwrap_or_default(),
            home: a.home.unwrap_or_default(),
            protective_reason,
            reason,
            withdraw,
            channels,
            note: a.note,
            until_unix_ms: until,
            review_at_unix_ms: review,
            until: at(until),
            review_at: at(review),
            ofsted_advice: a.ofsted_advice.unwrap_or_default(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    let l = r.lockdown.clone().unwrap_or_default();
    if !as_json {
        let whom = match target(&l).as_str() {
            "home" => format!("every child in {}", l.home_name),
            "device" => format!("{}'s device {}", l.child_name, l.device_id),
            _ => l.child_name.clone(),
        };
        println!(
            "Lockdown {} is in force for {whom}: {} withdrawn ({}). Protected contacts stay reachable.",
            l.id,
            withdrawn(&l),
            reason_of(&l)
        );
        if l.until_unix_ms > 0 {
            println!("It ends by itself at {}.", when(l.until_unix_ms));
        } else {
            println!(
                "It stays until lifted; review it by {}.",
                when(l.review_at_unix_ms)
            );
        }
    }
    let mut last = None;
    if a.wait_secs > 0 && !r.devices.is_empty() {
        let mut stream = c
            .watch_lockdown(api::WatchLockdownRequest {
                id: l.id.clone(),
                wait_secs: a.wait_secs,
            })
            .await
            .map_err(explain)?
            .into_inner();
        while let Some(p) = stream.next().await {
            let p = p.map_err(explain)?;
            if !as_json {
                println!("  {}", progress_line(&p));
            }
            last = Some(p);
        }
    }
    if as_json {
        return json(&serde_json::json!({
            "lockdown": r.lockdown,
            "devices": r.devices,
            "sanctions": r.sanctions,
            "obligations": r.obligations,
            "progress": last,
        }));
    }
    match &last {
        None if r.devices.is_empty() => {
            println!("No devices are enrolled for it yet; any enrolled later get it at once.")
        }
        None => {}
        Some(p) if p.finished && p.offline == 0 && p.failed.is_empty() => {
            println!("Every device has the lockdown.")
        }
        Some(p) if p.finished => println!(
            "Every online device has the lockdown; offline devices get it the moment they reconnect."
        ),
        Some(p) => println!(
            "Not confirmed after {} s by: {}. They get it as soon as they respond.",
            a.wait_secs,
            p.waiting.join(", ")
        ),
    }
    for s in &r.sanctions {
        println!(
            "Telephone access is reduced, so this is a sanction: record {} for {} is open (Regulation 35). Complete it by {}, manager sign-off by {}, talk with {} by {}.",
            s.id,
            s.child_name,
            when(s.complete_by_unix_ms),
            when(s.sign_off_by_unix_ms),
            s.child_name.split_whitespace().next().unwrap_or_default(),
            when(s.discuss_by_unix_ms),
        );
    }
    for o in r
        .obligations
        .iter()
        .filter(|o| o.obligation_kind == api::ObligationKind::NotifySocialWorker as i32)
    {
        println!(
            "Tell {}'s social worker by {} ({}): then run `haven notified {} --by NAME --how phone|email|in-person`.",
            o.child_name,
            when(o.due_at_unix_ms),
            o.id,
            o.id
        );
    }
    Ok(())
}

pub async fn lift(c: &mut Client, id: String, note: String, as_json: bool) -> anyhow::Result<()> {
    let l = c
        .lift_lockdown(api::LiftLockdownRequest { id, note })
        .await
        .map_err(explain)?
        .into_inner();
    if as_json {
        return json(&l);
    }
    println!(
        "Lifted lockdown {}. Devices are being updated now (policy version {}); offline ones update when they reconnect.",
        l.id, l.lifted_policy_version
    );
    Ok(())
}

pub async fn ofsted_advice(
    c: &mut Client,
    id: String,
    advice: String,
    as_json: bool,
) -> anyhow::Result<()> {
    let l = c
        .record_ofsted_advice(api::RecordOfstedAdviceRequest { id, advice })
        .await
        .map_err(explain)?
        .into_inner();
    if as_json {
        return json(&l);
    }
    println!("Recorded Ofsted's advice on lockdown {}.", l.id);
    Ok(())
}

pub async fn lockdowns(
    c: &mut Client,
    home: Option<String>,
    all: bool,
    pages: &PageArgs,
    as_json: bool,
) -> anyhow::Result<()> {
    let home = home.unwrap_or_default();
    let list = fetch(pages, None, |page_size, page_token| {
        let mut client = c.clone();
        let request = api::ListLockdownsRequest {
            home: home.clone(),
            include_lifted: all,
            page_size,
            page_token,
        };
        async move {
            let r = client.list_lockdowns(request).await?.into_inner();
            Ok((r.lockdowns, r.next_page_token))
        }
    })
    .await?;
    if as_json {
        return list.print_json("lockdowns");
    }
    list.print_next();
    let list = list.items;
    table(
        &[
            "id",
            "for",
            "withdrawn",
            "reason",
            "since",
            "by",
            "ends / review",
            "state",
        ],
        list.into_iter()
            .map(|l| {
                let whom = match target(&l).as_str() {
                    "home" => format!("{} (home)", l.home_name),
                    "device" => format!("{} (device {})", l.child_name, l.device_id),
                    _ => l.child_name.clone(),
                };
                let ends = if l.until_unix_ms > 0 {
                    format!("ends {}", when(l.until_unix_ms))
                } else {
                    format!("review by {}", when(l.review_at_unix_ms))
                };
                let state = if l.review_overdue {
                    "in force, REVIEW OVERDUE".to_string()
                } else if l.in_force {
                    "in force".to_string()
                } else {
                    format!("lifted {}", when(l.lifted_at_unix_ms))
                };
                let (withdrawn, reason) = (withdrawn(&l), reason_of(&l));
                vec![
                    l.id,
                    whom,
                    withdrawn,
                    reason,
                    when(l.started_at_unix_ms),
                    l.started_by_name,
                    ends,
                    state,
                ]
            })
            .collect(),
    );
    Ok(())
}

pub async fn obligations(
    c: &mut Client,
    home: Option<String>,
    overdue: bool,
    all: bool,
    pages: &PageArgs,
    as_json: bool,
) -> anyhow::Result<()> {
    let home = home.unwrap_or_default();
    let list = fetch(pages, None, |page_size, page_token| {
        let mut client = c.clone();
        let request = api::ListObligationsRequest {
            home: home.clone(),
            include_done: all,
            overdue_only: overdue,
            page_size,
            page_token,
        };
        async move {
            let r = client.list_obligations(request).await?.into_inner();
            Ok((r.obligations, r.next_page_token))
        }
    })
    .await?;
    if as_json {
        return list.print_json("obligations");
    }
    list.print_next();
    let list = list.items;
    table(
        &["id", "child", "what", "due", "state", "close with"],
        list.into_iter()
            .map(|o| {
                vec![
                    o.id,
                    o.child_name,
                    o.what,
                    when(o.due_at_unix_ms),
                    shown::<api::ObligationState>(o.obligation_state, &o.state).to_uppercase(),
                    o.closed_with,
                ]
            })
            .collect(),
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub async fn notified(
    c: &mut Client,
    id: String,
    by: String,
    how: String,
    at: Option<String>,
    note: Option<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_millisecond();
    let at = match at {
        Some(t) => parse_time(&t, now, &local_tz()).map_err(|e| anyhow!(e))?,
        None => now,
    };
    let o = c
        .record_notification(api::RecordNotificationRequest {
            id,
            by,
            method: typed::<api::NotificationMethod>(&how).0,
            how: typed::<api::NotificationMethod>(&how).1,
            at_unix_ms: at,
            at: crate::service::convert::at(at),
            note: note.unwrap_or_default(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    if as_json {
        return json(&o);
    }
    println!(
        "Recorded: {} told {}'s social worker by {} at {}. Obligation {} is closed.",
        o.done_by,
        o.child_name,
        shown::<api::NotificationMethod>(o.notification_method, &o.how),
        when(o.done_at_unix_ms),
        o.id
    );
    Ok(())
}

pub async fn sanctions(
    c: &mut Client,
    home: Option<String>,
    pages: &PageArgs,
    as_json: bool,
) -> anyhow::Result<()> {
    let home = home.unwrap_or_default();
    let list = fetch(pages, None, |page_size, page_token| {
        let mut client = c.clone();
        let request = api::ListSanctionsRequest {
            home: home.clone(),
            page_size,
            page_token,
        };
        async move {
            let r = client.list_sanctions(request).await?.into_inner();
            Ok((r.sanctions, r.next_page_token))
        }
    })
    .await?;
    if as_json {
        return list.print_json("sanctions");
    }
    list.print_next();
    let list = list.items;
    table(
        &[
            "id",
            "child",
            "when",
            "measure",
            "by",
            "record",
            "signed off",
            "child spoken to",
        ],
        list.into_iter()
            .map(|s| {
                let state = |done: i64, due: i64| {
                    if done > 0 {
                        format!("done {}", when(done))
                    } else {
                        format!("due {}", when(due))
                    }
                };
                vec![
                    s.id,
                    s.child_name,
                    when(s.occurred_at_unix_ms),
                    format!("{} ({})", s.measure, s.duration),
                    s.imposed_by,
                    state(s.completed_at_unix_ms, s.complete_by_unix_ms),
                    state(s.signed_off_at_unix_ms, s.sign_off_by_unix_ms),
                    if s.discussed_at_unix_ms > 0 {
                        format!(
                            "{} — views: {}",
                            when(s.discussed_at_unix_ms),
                            s.child_views
                        )
                    } else {
                        format!("due {}", when(s.discuss_by_unix_ms))
                    },
                ]
            })
            .collect(),
    );
    Ok(())
}

pub async fn sanction(c: &mut Client, cmd: SanctionCommand, as_json: bool) -> anyhow::Result<()> {
    let (s, done) = match cmd {
        SanctionCommand::Complete {
            id,
            behaviour,
            location,
            steps,
            present,
            effectiveness,
            injury,
        } => (
            c.complete_sanction(api::CompleteSanctionRequest {
                id,
                behaviour,
                location,
                steps_to_avoid: steps,
                others_present: present,
                effectiveness,
                injury_and_treatment: injury,
            })
            .await
            .map_err(explain)?
            .into_inner(),
            "completed; the Registered Manager signs it off next",
        ),
        SanctionCommand::SignOff {
            id,
            note,
            spoke_with,
        } => (
            c.sign_off_sanction(api::SignOffSanctionRequest {
                id,
                note,
                spoke_with_imposer: spoke_with,
            })
            .await
            .map_err(explain)?
            .into_inner(),
            "signed off as accurate",
        ),
        SanctionCommand::Discussed { id, views } => (
            c.record_sanction_discussion(api::RecordSanctionDiscussionRequest {
                id,
                child_views: views,
            })
            .await
            .map_err(explain)?
            .into_inner(),
            "recorded as discussed with the child, with their views",
        ),
    };
    if as_json {
        return json(&s);
    }
    println!("Sanction record {} for {}: {done}.", s.id, s.child_name);
    Ok(())
}

/// What a lockdown (or restriction) was started on: home, child or device.
fn target(l: &api::LockdownRecord) -> String {
    shown::<api::LockdownTarget>(l.target_kind, &l.target)
}

/// What it withdrew, as a list for people ("calls, messages").
fn withdrawn(l: &api::LockdownRecord) -> String {
    shown_all::<api::CommunicationChannel>(&l.withdrawn, &l.channels).join(", ")
}

/// Its protective reason, as the word staff typed.
fn reason_of(l: &api::LockdownRecord) -> String {
    shown::<api::RestrictionReason>(l.protective_reason, &l.reason)
}
