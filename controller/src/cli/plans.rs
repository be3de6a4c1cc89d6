//! `haven risk …` and `haven plan …`: recording risk assessments, revising a child's plan, and
//! reading it back — on screen, as a diff, or as the written record an inspector reads.

use std::fmt::Write as _;

use anyhow::{Context as _, anyhow};
use haven_proto::admin::v1 as api;

use super::client::explain;
use super::documents::{plan_to_toml, read_plan, read_risk};
use super::output::{json, table, when};
use super::{Intercepted, PlanCommand, RiskCommand};
use crate::domain::plan::{
    CameraPermission, CommunicationSection, PlanRevision, WebPermission, diff, in_force_for,
    restrictions_in_force,
};
use crate::service::plan_wire;

pub const RISK_TEMPLATE: &str = include_str!("templates/risk.toml");
pub const PLAN_TEMPLATE: &str = include_str!("templates/plan.toml");

type Client = api::plan_service_client::PlanServiceClient<Intercepted>;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PrintFormat {
    Markdown,
    Html,
}

pub async fn risk(c: &mut Client, cmd: RiskCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        RiskCommand::Template => print!("{RISK_TEMPLATE}"),
        RiskCommand::Add { child, file } => {
            let risk_assessment = read_risk(&file)?;
            let r = c
                .record_risk_assessment(api::RecordRiskAssessmentRequest {
                    child,
                    risk_assessment: Some(risk_assessment),
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&r);
            }
            println!(
                "Recorded risk assessment {}. Permissions in the plan can now name it.",
                r.id
            );
        }
        RiskCommand::List { child } => {
            let list = c
                .list_risk_assessments(api::ListRiskAssessmentsRequest { child })
                .await
                .map_err(explain)?
                .into_inner()
                .risk_assessments;
            if as_json {
                return json(&list);
            }
            table(
                &["id", "made", "by", "kind", "outcome", "review by"],
                list.into_iter()
                    .map(|r| {
                        let a = r.risk_assessment.unwrap_or_default();
                        let kind = match api::RiskAssessmentKind::try_from(a.kind) {
                            Ok(api::RiskAssessmentKind::Planned) => "planned",
                            Ok(api::RiskAssessmentKind::OnTheSpot) => "on the spot",
                            _ => "",
                        };
                        vec![
                            r.id,
                            r.made_at.as_ref().map(made).unwrap_or_default(),
                            r.made_by,
                            kind.to_string(),
                            a.outcome,
                            a.review_by,
                        ]
                    })
                    .collect(),
            );
        }
    }
    Ok(())
}

pub async fn reviews(
    c: &mut Client,
    home: Option<String>,
    within_days: u32,
    as_json: bool,
) -> anyhow::Result<()> {
    let list = c
        .list_reviews(api::ListReviewsRequest {
            home: home.unwrap_or_default(),
            within_days,
        })
        .await
        .map_err(explain)?
        .into_inner()
        .reviews;
    if as_json {
        return json(&list);
    }
    table(
        &["due", "", "child", "home", "what"],
        list.into_iter()
            .map(|r| {
                vec![
                    r.due,
                    if r.overdue {
                        "OVERDUE".into()
                    } else {
                        String::new()
                    },
                    r.child_name,
                    r.home_name,
                    r.what,
                ]
            })
            .collect(),
    );
    Ok(())
}

async fn history(
    c: &mut Client,
    child: &str,
) -> anyhow::Result<Vec<(api::PlanRevisionRecord, PlanRevision)>> {
    // Every revision, however many pages: the history is read whole to diff and print it.
    let records = super::pages::fetch(
        &super::pages::PageArgs::default(),
        None,
        |page_size, page_token| {
            let mut client = c.clone();
            let request = api::PlanHistoryRequest {
                child: child.to_string(),
                page_size,
                page_token,
            };
            async move {
                let r = client.plan_history(request).await?.into_inner();
                Ok((r.revisions, r.next_page_token))
            }
        },
    )
    .await?
    .items;
    records
        .into_iter()
        .map(|r| {
            let unreadable = || {
                anyhow!(
                    "revision {} could not be read: the controller sent it without its plan, or in a form this version of haven does not know (upgrade it)",
                    r.number
                )
            };
            let plan = r.plan.as_ref().ok_or_else(unreadable)?;
            let rev = plan_wire::revision_from_wire(
                plan,
                u32::try_from(r.number).map_err(|_| unreadable())?,
                &r.child_id,
                &r.made_by,
                r.made_at.as_ref().map_or(0, plan_wire::unix_ms),
            )
            .map_err(|e| anyhow!("revision {} could not be read ({e})", r.number))?;
            Ok((r, rev))
        })
        .collect()
}

/// When a record was made, as staff read times.
fn made(t: &haven_proto::well_known::Timestamp) -> String {
    when(plan_wire::unix_ms(t))
}

fn pick(
    revisions: &[(api::PlanRevisionRecord, PlanRevision)],
    number: u64,
) -> anyhow::Result<&(api::PlanRevisionRecord, PlanRevision)> {
    revisions
        .iter()
        .find(|(r, _)| r.number == number)
        .ok_or_else(|| {
            anyhow!(
                "there is no revision {number}: the plan has {} revision(s) (`haven plan history` lists them)",
                revisions.len()
            )
        })
}

pub async fn plan(c: &mut Client, cmd: PlanCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        PlanCommand::Template => print!("{PLAN_TEMPLATE}"),
        PlanCommand::Revise {
            child,
            file,
            based_on,
        } => {
            let plan = read_plan(&file)?;
            let based_on_revision = match based_on {
                Some(n) => n,
                None => history(c, &child)
                    .await?
                    .last()
                    .map_or(0, |(r, _)| r.number),
            };
            let r = c
                .revise_plan(api::RevisePlanRequest {
                    child,
                    based_on_revision,
                    plan: Some(plan),
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&r);
            }
            println!(
                "Made revision {} of the plan. The child's devices are being sent policy version {}.",
                r.number, r.policy_version
            );
            if !r.sanction_ids.is_empty() {
                println!(
                    "It reduces telephone or messaging access, which is a sanction (Regulation 35): opened {}. Tell the social worker and complete the record: see `haven obligations`.",
                    r.sanction_ids.join(", ")
                );
            }
        }
        PlanCommand::History { child } => {
            let all = history(c, &child).await?;
            if as_json {
                let records: Vec<&api::PlanRevisionRecord> = all.iter().map(|(r, _)| r).collect();
                return json(&records);
            }
            table(
                &["revision", "made", "by", "why", "restricts"],
                all.iter()
                    .enumerate()
                    .map(|(i, (rec, rev))| {
                        let prev = i.checked_sub(1).map(|p| &all[p].1.section);
                        vec![
                            rec.number.to_string(),
                            rec.made_at.as_ref().map(made).unwrap_or_default(),
                            rec.made_by.clone(),
                            rev.reason.clone(),
                            if crate::domain::plan::is_restriction(prev, &rev.section) {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                        ]
                    })
                    .collect(),
            );
        }
        PlanCommand::Show {
            child,
            revision,
            toml,
        } => {
            let all = history(c, &child).await?;
            let Some(last) = all.last() else {
                return Err(anyhow!(
                    "{child} has no plan yet: start from `haven plan template`"
                ));
            };
            let is_current = revision.is_none_or(|n| n == u64::from(last.1.number));
            let (record, rev) = match revision {
                Some(n) => pick(&all, n)?,
                None => last,
            };
            if toml {
                // The form `haven plan revise` reads, so the next revision starts from this one.
                print!("{}", plan_to_toml(&plan_wire::plan_to_wire(rev))?);
            } else if as_json {
                json(record)?;
            } else {
                print!(
                    "{}",
                    render(std::slice::from_ref(rev), PrintFormat::Markdown, false)
                );
                if is_current {
                    let revisions: Vec<PlanRevision> = all.iter().map(|(_, r)| r.clone()).collect();
                    print!("{}", markdown(&in_force_blocks(&revisions)));
                }
            }
        }
        PlanCommand::Diff { child, from, to } => {
            let all = history(c, &child).await?;
            let a = &pick(&all, from)?.1;
            let b = &pick(&all, to)?.1;
            let lines = diff(Some(&a.section), &b.section);
            if as_json {
                return json(&lines);
            }
            if lines.is_empty() {
                println!("Revisions {from} and {to} allow exactly the same.");
            }
            for line in lines {
                println!("  {line}");
            }
        }
        PlanCommand::Print {
            child,
            format,
            output,
        } => {
            let all: Vec<PlanRevision> = history(c, &child)
                .await?
                .into_iter()
                .map(|(_, r)| r)
                .collect();
            if all.is_empty() {
                return Err(anyhow!(
                    "{child} has no plan yet, so there is nothing to print"
                ));
            }
            let text = render(&all, format, true);
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("could not write {}", path.display()))?;
                    println!("Wrote {}.", path.display());
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

/// A small document model, rendered as Markdown or HTML with the same words.
enum Block {
    Heading(u8, String),
    Para(String),
    Bullets(Vec<String>),
}

/// What is withheld now and for how long (KP1): restrictions are exceptions, and staff can
/// see how long each has been in force.
fn in_force_blocks(revisions: &[PlanRevision]) -> Vec<Block> {
    let now = jiff::Timestamp::now().as_millisecond();
    let items: Vec<String> = restrictions_in_force(revisions)
        .into_iter()
        .map(|r| {
            let review = r
                .review_by
                .map(|d| format!("; review by {d}"))
                .unwrap_or_default();
            format!(
                "{}: in force for {} (since revision {}, {}: \"{}\"){review}",
                r.what,
                in_force_for(r.since, now),
                r.since_revision,
                when(r.since),
                r.reason.trim()
            )
        })
        .collect();
    if items.is_empty() {
        return Vec::new();
    }
    vec![
        Block::Heading(3, "Restrictions in force".into()),
        Block::Bullets(items),
    ]
}

fn describe_section(s: &CommunicationSection) -> Vec<Block> {
    let mut out = Vec::new();
    out.push(Block::Heading(3, "Calls and messages".into()));
    if s.contacts.is_empty() {
        out.push(Block::Para(
            "No contacts are arranged beyond the protected contacts.".into(),
        ));
    } else {
        out.push(Block::Bullets(
            s.contacts
                .iter()
                .map(|c| {
                    let how: Vec<String> = c
                        .addresses
                        .iter()
                        .map(|a| {
                            let verb = a.channel.verb();
                            match &a.app {
                                Some(app) => format!("{verb} {} on {app}", a.address),
                                None => format!("{verb} {}", a.address),
                            }
                        })
                        .collect();
                    let times = crate::domain::plan::describe_windows(&c.windows);
                    format!(
                        "{}: {}{} (risk assessment {})",
                        c.label(),
                        how.join(", "),
                        if times.is_empty() {
                            String::new()
                        } else {
                            format!(", {times}")
                        },
                        c.risk_assessment
                    )
                })
                .collect(),
        ));
    }
    out.push(Block::Heading(3, "Camera".into()));
    out.push(Block::Para(match &s.camera {
        CameraPermission::Off => "Off.".into(),
        CameraPermission::On {
            placing_authority_agreement,
            parent_consultation,
            review_by,
            risk_assessment,
        } => format!(
            "Allowed: agreed by {} for the placing authority on {}, with the parents (or person with Parental Responsibility) consulted — {} on {}. Review by {review_by}. Risk assessment {risk_assessment}.",
            placing_authority_agreement.who,
            placing_authority_agreement.when,
            parent_consultation.who,
            parent_consultation.when
        ),
    }));
    out.push(Block::Heading(3, "Internet and social networking".into()));
    match &s.web {
        WebPermission::Off => out.push(Block::Para("Off.".into())),
        WebPermission::Filtered {
            filter_profile,
            risk_assessment,
            social_sites,
            review_by,
        } => {
            out.push(Block::Para(format!(
                "Allowed through the \"{filter_profile}\" filter (risk assessment {risk_assessment}){}.",
                review_by
                    .map(|d| format!("; review by {d}"))
                    .unwrap_or_default()
            )));
            if !social_sites.is_empty() {
                out.push(Block::Bullets(
                    social_sites
                        .iter()
                        .map(|site| {
                            format!(
                                "{} (risk assessment {}, review by {})",
                                site.domain, site.risk_assessment, site.review_by
                            )
                        })
                        .collect(),
                ));
            }
        }
    }
    out.push(Block::Heading(3, "Apps".into()));
    out.push(Block::Para(format!(
        "{}{}{}",
        if s.apps.default_allow {
            "Apps may be used unless blocked."
        } else {
            "Only the allowed apps may be used."
        },
        if s.apps.allowed.is_empty() {
            String::new()
        } else {
            format!(" Allowed: {}.", s.apps.allowed.join(", "))
        },
        if s.apps.blocked.is_empty() {
            String::new()
        } else {
            format!(" Blocked: {}.", s.apps.blocked.join(", "))
        }
    )));
    for (title, list) in [
        ("Letters", &s.letters),
        ("Face-to-face contact", &s.face_to_face),
    ] {
        out.push(Block::Heading(3, title.into()));
        if list.is_empty() {
            out.push(Block::Para("None arranged.".into()));
        } else {
            out.push(Block::Bullets(
                list.iter()
                    .map(|a| {
                        format!(
                            "{}: {} (risk assessment {})",
                            a.with_whom, a.details, a.risk_assessment
                        )
                    })
                    .collect(),
            ));
        }
    }
    out
}

fn consulted(label: &str, c: &Option<crate::domain::plan::ConsultRecord>) -> String {
    use crate::domain::plan::ConsultRecord;
    match c {
        Some(ConsultRecord::Consulted { who, when, notes }) => format!(
            "{label}: consulted — {who} on {when}{}",
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({notes})")
            }
        ),
        Some(ConsultRecord::NotConsulted { reason }) => {
            format!("{label}: not consulted, because {reason}")
        }
        None => format!("{label}: not recorded"),
    }
}

fn revision_blocks(rev: &PlanRevision, previous: Option<&PlanRevision>) -> Vec<Block> {
    let made = jiff::Timestamp::from_millisecond(rev.made_at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let mut out = vec![
        Block::Heading(2, format!("Revision {}", rev.number)),
        Block::Bullets(vec![
            format!("Made by {} on {made}", rev.made_by),
            format!("Why: {}", rev.reason),
            consulted("Social worker", &rev.consultation.social_worker),
            consulted(
                "Parents / person with Parental Responsibility",
                &rev.consultation.parents,
            ),
            format!("Shared with: {}", shared_with(&rev.shared_with)),
            format!(
                "The child's views: {}",
                rev.child_views
                    .clone()
                    .unwrap_or_else(|| "not recorded".into())
            ),
            format!(
                "Review by: {}",
                rev.review_by
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "not set".into())
            ),
        ]),
    ];
    if let Some(prev) = previous {
        let changes = diff(Some(&prev.section), &rev.section);
        out.push(Block::Para(format!(
            "Changes from revision {}:",
            prev.number
        )));
        out.push(Block::Bullets(if changes.is_empty() {
            vec!["none".into()]
        } else {
            changes
        }));
    }
    out.extend(describe_section(&rev.section));
    out
}

fn shared_with(s: &crate::domain::plan::SharedWith) -> String {
    let mut who = Vec::new();
    if s.child {
        who.push("the child".to_string());
    }
    if s.social_worker {
        who.push("the social worker".to_string());
    }
    who.extend(s.others.iter().cloned());
    if who.is_empty() {
        "nobody recorded".into()
    } else {
        who.join(", ")
    }
}

/// The plan as a written record: the current arrangements first, then every revision.
fn render(revisions: &[PlanRevision], format: PrintFormat, full: bool) -> String {
    let mut blocks = Vec::new();
    let Some(current) = revisions.last() else {
        return String::new();
    };
    blocks.push(Block::Heading(
        1,
        format!(
            "Placement Plan — communication (child {}), revision {}",
            current.child_id, current.number
        ),
    ));
    if full {
        blocks.push(Block::Para(
            "The arrangements in force, then every revision with who made it, when, why and who was consulted. Revisions are never edited or deleted.".into(),
        ));
        blocks.extend(describe_section(&current.section));
        blocks.extend(in_force_blocks(revisions));
        for (i, rev) in revisions.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| &revisions[p]);
            blocks.extend(revision_blocks(rev, prev));
        }
    } else {
        blocks.extend(revision_blocks(current, None));
    }
    match format {
        PrintFormat::Markdown => markdown(&blocks),
        PrintFormat::Html => html(&blocks),
    }
}

fn markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {text}\n", "#".repeat(*level as usize));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::Bullets(items) => {
                for item in items {
                    let _ = writeln!(out, "- {item}");
                }
                out.push('\n');
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(blocks: &[Block]) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\"><title>Placement Plan — communication</title>\n<style>body{font-family:sans-serif;max-width:48em;margin:2em auto;line-height:1.5}h2{border-top:1px solid #999;padding-top:1em}</style></head><body>\n",
    );
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", escape(text));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "<p>{}</p>", escape(text));
            }
            Block::Bullets(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", escape(item));
                }
                out.push_str("</ul>\n");
            }
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        let out = html(&[Block::Para("<script>".into())]);
        assert!(out.contains("&lt;script&gt;") && !out.contains("<script>"));
    }

    // clause RM3, GD3, R7: `haven plan show --toml` keeps a revision's grounds, so a manager
    // starting the next revision from it carries them forward.
    #[test]
    fn rm3_gd3_a_revision_with_its_grounds_round_trips_through_toml() {
        use crate::domain::contact_risk::RiskDecision;
        use crate::domain::plan::{Consultation, Grounds, SharedWith};
        let rev = PlanRevision {
            number: 2,
            child_id: "chd-1".into(),
            made_by: "stf-m".into(),
            made_at: 1,
            reason: "calls stop for now".into(),
            consultation: Consultation::default(),
            shared_with: SharedWith::default(),
            child_views: Some("not happy".into()),
            review_by: None,
            grounds: Grounds {
                protective_reason: Some("injury-to-child".into()),
                evidence: Some("threats".into()),
                risk_decisions: vec![RiskDecision {
                    contact: "Dad".into(),
                    decided_by: "R. Patel".into(),
                    social_worker_agreed: "J. Okafor".into(),
                    decision: "supervised".into(),
                    order_terms: None,
                }],
                views_not_sought: None,
            },
            section: Default::default(),
        };
        let text = plan_to_toml(&plan_wire::plan_to_wire(&rev)).unwrap();
        let back = crate::cli::documents::plan_from_text(&text).unwrap();
        let draft = plan_wire::plan_from_wire("plan", &back, "chd-1", "stf-m", 1).unwrap();
        assert_eq!(draft.grounds, rev.grounds, "{text}");
    }
}
