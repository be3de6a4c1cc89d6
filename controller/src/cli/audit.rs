//! `haven audit …`: prove the trail (R36) — the chain, the checkpoints, the records against
//! the trail — sign a checkpoint to keep off the controller, and list who read a child's
//! records for a subject access request.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use haven_proto::admin::v1 as api;

use super::Intercepted;
use super::client::explain;
use super::output::{json, table, when};
use crate::domain::checkpoint::Checkpoint;

type Audit = api::audit_service_client::AuditServiceClient<Intercepted>;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Prove the audit trail has not been altered, or name the first entry that was; check
    /// every kept checkpoint and that every record has its entries.
    Verify {
        /// A checkpoint printed by `haven audit checkpoint` and kept off the controller: the
        /// trail must still hold its entry, with the same hash, at the same position.
        #[arg(long, value_name = "FILE")]
        since_checkpoint: Option<PathBuf>,
    },
    /// Sign where the trail stands now and print the checkpoint to keep off the controller
    /// (managers and administrators).
    Checkpoint {
        /// Also write the checkpoint to this file.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Who read a child's records, what and when, newest first (subject access requests).
    Reads {
        /// The child's name or id.
        #[arg(long)]
        child: String,
        /// Only since this time: 2026-11-28, "2026-11-28 06:00", an RFC 3339 time, or a
        /// length of time ago such as 30d.
        #[arg(long)]
        since: Option<String>,
        /// At most this many, newest first [default: all of them].
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        pages: super::pages::PageArgs,
    },
}

pub async fn run(audit: &mut Audit, cmd: AuditCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { since_checkpoint } => verify(audit, since_checkpoint, as_json).await,
        AuditCommand::Checkpoint { output } => {
            let c = audit
                .make_checkpoint(api::MakeCheckpointRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(path) = &output {
                std::fs::write(path, &c.text)
                    .with_context(|| format!("could not write {}", path.display()))?;
            }
            if as_json {
                json(&c)?;
            } else {
                print!("{}", c.text);
                eprintln!(
                    "Keep this block somewhere other than the controller (print it, or save it to a USB stick or the home's records)."
                );
            }
            Ok(())
        }
        AuditCommand::Reads {
            child,
            since,
            limit,
            pages,
        } => {
            let since_unix_ms = match &since {
                Some(text) => super::violations::parse_since(text, jiff::Zoned::now())
                    .map_err(|e| anyhow!(e))?,
                None => 0,
            };
            let whose = std::cell::RefCell::new((String::new(), String::new()));
            let reads = super::pages::fetch(&pages, limit, |page_size, page_token| {
                let mut client = audit.clone();
                let request = api::ListReadsRequest {
                    child: child.clone(),
                    since_unix_ms,
                    page_size,
                    page_token,
                    ..Default::default()
                };
                let whose = &whose;
                async move {
                    let r = client.list_reads(request).await?.into_inner();
                    *whose.borrow_mut() = (r.child_id, r.child_name);
                    Ok((r.reads, r.next_page_token))
                }
            })
            .await?;
            let (child_id, child_name) = whose.into_inner();
            // One answer, as one page of the whole list reads: the rows of every page fetched
            // and the token for the next one (empty unless a page was asked for by hand).
            let r = api::ListReadsResponse {
                child_id,
                child_name,
                reads: reads.items,
                next_page_token: reads.next_page_token,
            };
            if as_json {
                return json(&r);
            }
            println!("Who read {}'s records:", r.child_name);
            table(
                &["when", "staff", "what was read"],
                r.reads
                    .iter()
                    .map(|x| vec![when(x.at_unix_ms), x.staff_name.clone(), x.what.clone()])
                    .collect(),
            );
            Ok(())
        }
    }
}

async fn verify(
    audit: &mut Audit,
    since_checkpoint: Option<PathBuf>,
    as_json: bool,
) -> anyhow::Result<()> {
    let checkpoint = match &since_checkpoint {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "could not read the checkpoint {}: give the file `haven audit checkpoint` printed",
                    path.display()
                )
            })?;
            // Checked here too, with the key in the file, so a forged block is refused
            // whatever the controller says.
            Checkpoint::from_text(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            text
        }
        None => String::new(),
    };
    let r = audit
        .check_audit(api::CheckAuditRequest { checkpoint })
        .await
        .map_err(explain)?
        .into_inner();
    if as_json {
        json(&r)?;
    }
    if !r.intact {
        return Err(anyhow!(
            "the audit trail is NOT intact: entry {} fails because {} ({} entries before it are intact); keep a copy of the database and report this",
            r.first_broken_entry,
            r.reason,
            r.entries_checked
        ));
    }
    if !r.checkpoints_hold {
        return Err(anyhow!(
            "the audit trail is NOT intact: {}; keep a copy of the database and report this",
            r.checkpoint_problem
        ));
    }
    if !r.records_agree {
        return Err(anyhow!(
            "the records do NOT agree with the audit trail: {}; keep a copy of the database and report this",
            r.records_disagreement
        ));
    }
    if !as_json {
        println!(
            "The audit trail is intact: all {} entries follow from one another and none was changed.",
            r.entries_checked
        );
        if r.checkpoint_given {
            println!(
                "It still holds the checkpoint you gave, signed by this controller's key {}.",
                r.key_id
            );
        }
        println!(
            "{} signed checkpoints hold; every record has its audit entries.",
            r.checkpoints_checked
        );
        if r.checkpoints_by_other_key > 0 {
            println!(
                "{} checkpoints kept here were signed by another key and could not be checked (the audit key was replaced, e.g. restored without audit-key.txt).",
                r.checkpoints_by_other_key
            );
        }
    }
    Ok(())
}
