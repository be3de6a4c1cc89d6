//! `haven camera …`: record a camera incident and, if the risk cannot be reduced, withdraw the
//! camera in one command (IM2).

use haven_proto::admin::v1 as api;

use super::Intercepted;
use super::client::explain;
use super::output::{json, table, when};

type Records = api::records_service_client::RecordsServiceClient<Intercepted>;
type Plans = api::plan_service_client::PlanServiceClient<Intercepted>;

#[derive(Debug, clap::Subcommand)]
pub enum CameraCommand {
    /// Record a camera incident; the camera arrangement then needs a review now.
    Incident {
        child: String,
        /// What happened, e.g. "photos of another child shared in a group chat".
        #[arg(long)]
        what: String,
        /// Images may have been, or may be, passed to people who could exploit them.
        #[arg(long)]
        images_may_reach_others: bool,
    },
    /// A child's camera incidents.
    Incidents { child: String },
    /// Withdraw the camera now (managers): a new plan revision with the camera off and
    /// nothing else changed; the child's devices turn it off at once.
    Withdraw {
        child: String,
        /// Why, in a sentence the child's social worker can read.
        #[arg(long)]
        reason: String,
        /// When the withdrawal is reviewed (YYYY-MM-DD); four weeks from today if not given.
        #[arg(long)]
        review: Option<String>,
    },
}

pub async fn camera(
    records: &mut Records,
    plans: &mut Plans,
    cmd: CameraCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    match cmd {
        CameraCommand::Incident {
            child,
            what,
            images_may_reach_others,
        } => {
            let i = records
                .record_camera_incident(api::RecordCameraIncidentRequest {
                    child,
                    what_happened: what,
                    images_may_reach_others,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&i);
            }
            println!("Recorded camera incident {}.", i.id);
            if i.review_required {
                println!(
                    "The camera arrangement now needs a review: `haven reviews --due` lists it \
                     until a manager revises the plan. If the risk cannot be reduced, withdraw \
                     the camera with `haven camera withdraw {} --reason \"...\"`.",
                    i.child_id
                );
            }
        }
        CameraCommand::Incidents { child } => {
            let list = records
                .list_camera_incidents(api::ListCameraIncidentsRequest { child })
                .await
                .map_err(explain)?
                .into_inner()
                .incidents;
            if as_json {
                return json(&list);
            }
            table(
                &[
                    "id",
                    "when",
                    "what happened",
                    "images may reach others",
                    "review",
                ],
                list.into_iter()
                    .map(|i| {
                        vec![
                            i.id,
                            when(i.recorded_at_unix_ms),
                            i.what_happened,
                            if i.images_may_reach_others {
                                "yes"
                            } else {
                                "no"
                            }
                            .into(),
                            if i.review_required { "required" } else { "-" }.into(),
                        ]
                    })
                    .collect(),
            );
        }
        CameraCommand::Withdraw {
            child,
            reason,
            review,
        } => {
            let r = plans
                .withdraw_camera(api::WithdrawCameraRequest {
                    child,
                    reason,
                    review_by: review.unwrap_or_default(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&r);
            }
            println!(
                "The camera is withdrawn (plan revision {}). The child's devices are turning it \
                 off now. Tell the child's social worker and parents, and review it by the date \
                 in the plan.",
                r.number
            );
        }
    }
    Ok(())
}
