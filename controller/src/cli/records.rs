//! `haven report …` and `haven photo-approval …`: what staff report, and the register of
//! approvals to take images of a child.

// Records from an older controller carry only the deprecated words fields; `shown` falls back
// to them.
#![allow(deprecated)]

use haven_proto::admin::v1 as api;

use crate::service::wire_enums::{shown, typed};

use super::Intercepted;
use super::client::explain;
use super::output::{json, table, when};

type Client = api::records_service_client::RecordsServiceClient<Intercepted>;

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// You were contacted off duty by a child, or someone known to a child: stop the
    /// communication, then report it here. It goes on the managers' list.
    OffDutyContact {
        #[arg(long)]
        home: String,
        /// The child involved, if known.
        #[arg(long)]
        child: Option<String>,
        /// When it happened, e.g. "2026-11-27 21:40".
        #[arg(long)]
        when: String,
        /// How, e.g. "Facebook message".
        #[arg(long)]
        how: String,
        /// Who made contact, e.g. "Amira's cousin" or "unknown account".
        #[arg(long)]
        who: String,
        /// What happened, and what you did.
        #[arg(long)]
        what: String,
        /// Say this if the communication is still open (it should be stopped at once).
        #[arg(long)]
        not_stopped: bool,
    },
    /// Reports still waiting for a manager (all with --all).
    List {
        #[arg(long)]
        home: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// A manager records what was done about a report.
    Acknowledge {
        id: String,
        #[arg(long)]
        note: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RequestsCommand {
    /// Requests and views children sent from their devices, waiting for an answer
    /// (answered ones too with --all).
    List {
        #[arg(long)]
        child: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Answer a request (managers): the decision and the reason go back to the child's device.
    Answer {
        id: String,
        /// agreed, agreed-in-part or not-agreed
        #[arg(long)]
        decision: String,
        /// Why, in words the child will read.
        #[arg(long)]
        reason: String,
    },
}

pub async fn requests(c: &mut Client, cmd: RequestsCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        RequestsCommand::List { child, all } => {
            let list = c
                .list_child_requests(api::ListChildRequestsRequest {
                    child: child.unwrap_or_default(),
                    include_answered: all,
                })
                .await
                .map_err(explain)?
                .into_inner()
                .requests;
            if as_json {
                return json(&list);
            }
            table(
                &["id", "child", "received", "request", "answer"],
                list.into_iter()
                    .map(|r| {
                        let decision =
                            shown::<api::RequestDecision>(r.request_decision, &r.decision);
                        vec![
                            r.id,
                            r.child_name,
                            when(r.received_at_unix_ms),
                            r.text,
                            if decision.is_empty() {
                                "waiting".into()
                            } else {
                                format!("{decision}: {}", r.reason)
                            },
                        ]
                    })
                    .collect(),
            );
        }
        RequestsCommand::Answer {
            id,
            decision,
            reason,
        } => {
            let r = c
                .answer_child_request(api::AnswerChildRequestRequest {
                    id,
                    request_decision: typed::<api::RequestDecision>(&decision).0,
                    decision: typed::<api::RequestDecision>(&decision).1,
                    reason,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&r);
            }
            println!(
                "Answered {}'s request ({}). The answer and your reason are on their way to the device.",
                r.child_name,
                shown::<api::RequestDecision>(r.request_decision, &r.decision)
            );
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum PhotoApprovalCommand {
    /// Register an approval given by the Community Director with the placing authority.
    Add {
        child: String,
        /// The Community Director who approved.
        #[arg(long)]
        approved_by: String,
        /// Who at the placing authority was consulted.
        #[arg(long)]
        placing_authority: String,
        /// When they were consulted (YYYY-MM-DD).
        #[arg(long)]
        consulted_on: String,
        /// What the images are for and who will see them.
        #[arg(long)]
        purpose: String,
        /// When the approval ends (YYYY-MM-DD).
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// A child's approvals.
    List { child: String },
}

pub async fn report(c: &mut Client, cmd: ReportCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        ReportCommand::OffDutyContact {
            home,
            child,
            when: at,
            how,
            who,
            what,
            not_stopped,
        } => {
            let r = c
                .report_off_duty_contact(api::ReportOffDutyContactRequest {
                    home,
                    child: child.unwrap_or_default(),
                    when: at,
                    how,
                    who,
                    what_happened: what,
                    communication_stopped: !not_stopped,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&r);
            }
            println!("Reported ({}). It is on the managers' list now.", r.id);
            if not_stopped {
                println!(
                    "The policy says to stop the communication at once: do that now, and tell your manager."
                );
            }
        }
        ReportCommand::List { home, all } => {
            let reports = c
                .list_off_duty_reports(api::ListOffDutyReportsRequest {
                    home: home.unwrap_or_default(),
                    open_only: !all,
                })
                .await
                .map_err(explain)?
                .into_inner()
                .reports;
            if as_json {
                return json(&reports);
            }
            table(
                &[
                    "id", "reported", "by", "when", "how", "who", "stopped", "manager",
                ],
                reports
                    .into_iter()
                    .map(|r| {
                        vec![
                            r.id,
                            when(r.created_at_unix_ms),
                            r.reported_by,
                            r.when,
                            r.how,
                            r.who,
                            if r.communication_stopped { "yes" } else { "NO" }.into(),
                            if r.acknowledged_by.is_empty() {
                                "waiting".into()
                            } else {
                                format!("{}: {}", r.acknowledged_by, r.manager_note)
                            },
                        ]
                    })
                    .collect(),
            );
        }
        ReportCommand::Acknowledge { id, note } => {
            let r = c
                .acknowledge_off_duty_report(api::AcknowledgeOffDutyReportRequest { id, note })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&r);
            }
            println!("Acknowledged report {}.", r.id);
        }
    }
    Ok(())
}

pub async fn photo(c: &mut Client, cmd: PhotoApprovalCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        PhotoApprovalCommand::Add {
            child,
            approved_by,
            placing_authority,
            consulted_on,
            purpose,
            valid_until,
        } => {
            let a = c
                .add_photography_approval(api::AddPhotographyApprovalRequest {
                    child,
                    approved_by,
                    placing_authority_consulted: placing_authority,
                    consulted_on,
                    purpose,
                    valid_until: valid_until.unwrap_or_default(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&a);
            }
            println!("Registered photography approval {}.", a.id);
        }
        PhotoApprovalCommand::List { child } => {
            let list = c
                .list_photography_approvals(api::ListPhotographyApprovalsRequest { child })
                .await
                .map_err(explain)?
                .into_inner()
                .approvals;
            if as_json {
                return json(&list);
            }
            table(
                &[
                    "id",
                    "approved by",
                    "placing authority",
                    "consulted",
                    "purpose",
                    "until",
                ],
                list.into_iter()
                    .map(|a| {
                        vec![
                            a.id,
                            a.approved_by,
                            a.placing_authority_consulted,
                            a.consulted_on,
                            a.purpose,
                            if a.valid_until.is_empty() {
                                "-".into()
                            } else {
                                a.valid_until
                            },
                        ]
                    })
                    .collect(),
            );
        }
    }
    Ok(())
}
