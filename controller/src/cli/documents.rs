//! Reading the documents staff write — a risk assessment, a plan revision — from a TOML or
//! JSON file (or standard input) into the typed messages the controller takes, and writing a
//! revision back out in the same form (`haven plan show --toml`).
//!
//! The file is the form of `haven plan template` / `haven risk template`. A key the form does
//! not have is refused by name, with the line it is on and the key that was probably meant,
//! because a misspelt key that was quietly dropped would leave a child's plan saying less
//! than the manager wrote. Only the form is checked here; the controller checks the rules.

use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context as _, anyhow};
use haven_proto::admin::v1 as api;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::emergency::ProtectiveReason;

// ---------------------------------------------------------------------------------------------
// Reading a file
// ---------------------------------------------------------------------------------------------

fn read_text(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("could not read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))
    }
}

/// Reads `path` (or standard input for `-`) as a plan revision.
pub fn read_plan(path: &Path) -> anyhow::Result<api::PlacementPlan> {
    let text = read_text(path)?;
    plan_from_text(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Reads `path` (or standard input for `-`) as a risk assessment.
pub fn read_risk(path: &Path) -> anyhow::Result<api::RiskAssessment> {
    let text = read_text(path)?;
    risk_from_text(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// A plan revision file (TOML or JSON) as the message, or what is wrong with it.
pub(crate) fn plan_from_text(text: &str) -> Result<api::PlacementPlan, String> {
    parse::<PlanFile>(text)?.into_wire()
}

/// A risk assessment file (TOML or JSON) as the message, or what is wrong with it.
pub(crate) fn risk_from_text(text: &str) -> Result<api::RiskAssessment, String> {
    Ok(parse::<RiskFile>(text)?.into_wire())
}

/// A revision in the form staff edit, so the next revision can start from it.
pub fn plan_to_toml(plan: &api::PlacementPlan) -> anyhow::Result<String> {
    toml::to_string(&PlanFile::from_wire(plan)).context("could not write the plan as TOML")
}

/// Reads TOML, or JSON when the text starts with `{`, into a form.
fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| {
            // serde_json ends its message with " at line L column C"; the line goes first.
            let full = e.to_string();
            let message = full
                .rfind(" at line ")
                .map_or(full.as_str(), |i| &full[..i]);
            explain("JSON", (e.line() > 0).then_some(e.line()), message)
        });
    }
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        explain("TOML", line, e.message())
    })
}

/// One line saying where the file is wrong and what to do, with the key that was probably
/// meant when one is misspelt.
fn explain(format: &str, line: Option<usize>, message: &str) -> String {
    let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    let message = message.trim().replace('\n', " ");
    for (prefix, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((given, expected)) = rest.split_once('`')
        {
            let choices = backticked(expected);
            return match closest(given, &choices) {
                Some(meant) => format!("{at}unknown {what} `{given}`; did you mean `{meant}`?"),
                None if choices.is_empty() => {
                    format!("{at}unknown {what} `{given}`: this part of the form takes none")
                }
                None => format!(
                    "{at}unknown {what} `{given}`; use one of {}",
                    choices
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        return format!("{at}`{key}` is missing: add it (see the template)");
    }
    format!("{at}is not a {format} form Haven can read ({message}): fix it and try again")
}

/// The names between backticks in serde's "expected one of `a`, `b`".
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The choice nearest to what was typed, if it is near enough to be a slip.
fn closest<'c>(given: &str, choices: &[&'c str]) -> Option<&'c str> {
    let given = given.to_ascii_lowercase();
    choices
        .iter()
        .map(|c| (edit_distance(&given, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------------------------
// The plan form (see templates/plan.toml)
// ---------------------------------------------------------------------------------------------

fn is_false(b: &bool) -> bool {
    !*b
}

fn some_text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    child_views: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    views_not_sought: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protective_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evidence: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    risk_decisions: Vec<RiskDecisionFile>,
    #[serde(default)]
    consultation: ConsultationFile,
    #[serde(default)]
    shared_with: SharedWithFile,
    #[serde(default)]
    section: SectionFile,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RiskDecisionFile {
    #[serde(default)]
    contact: String,
    #[serde(default)]
    decided_by: String,
    #[serde(default)]
    social_worker_agreed: String,
    #[serde(default)]
    decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order_terms: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsultationFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    social_worker: Option<ConsultFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parents: Option<ConsultFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
enum ConsultFile {
    Consulted {
        #[serde(default)]
        who: String,
        #[serde(default)]
        when: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        notes: String,
    },
    NotConsulted {
        #[serde(default)]
        reason: String,
    },
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedWithFile {
    #[serde(default, skip_serializing_if = "is_false")]
    child: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    social_worker: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    others: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    contacts: Vec<ContactFile>,
    #[serde(default)]
    camera: CameraFile,
    #[serde(default)]
    web: WebFile,
    #[serde(default)]
    apps: AppsFile,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    letters: Vec<ArrangementFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    face_to_face: Vec<ArrangementFile>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    relationship: String,
    #[serde(default)]
    risk_assessment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review_by: Option<String>,
    #[serde(default)]
    addresses: Vec<AddressFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    windows: Vec<WindowFile>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChannelFile {
    Call,
    Sms,
    Messaging,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressFile {
    channel: ChannelFile,
    #[serde(default)]
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFile {
    start_minute: u32,
    end_minute: u32,
    /// ISO day numbers: 1 is Monday, 7 is Sunday.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    weekdays: Vec<u8>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgreementFile {
    #[serde(default)]
    who: String,
    #[serde(default)]
    when: String,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
enum CameraFile {
    #[default]
    Off,
    On {
        #[serde(default)]
        review_by: String,
        #[serde(default)]
        risk_assessment: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placing_authority_agreement: Option<AgreementFile>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_consultation: Option<AgreementFile>,
    },
}

#[derive(Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
enum WebFile {
    #[default]
    Off,
    Filtered {
        #[serde(default)]
        filter_profile: String,
        #[serde(default)]
        risk_assessment: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        review_by: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        social_sites: Vec<SocialSiteFile>,
    },
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SocialSiteFile {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    risk_assessment: String,
    #[serde(default)]
    review_by: String,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFile {
    /// `true`: anything not blocked may run; `false`: only the allowed apps may run.
    #[serde(default = "yes")]
    default_allow: bool,
    #[serde(default)]
    allowed: Vec<String>,
    #[serde(default)]
    blocked: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    risk_assessment: Option<String>,
}

impl Default for AppsFile {
    fn default() -> Self {
        AppsFile {
            default_allow: true,
            allowed: Vec::new(),
            blocked: Vec::new(),
            risk_assessment: None,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrangementFile {
    #[serde(default)]
    with_whom: String,
    #[serde(default)]
    details: String,
    #[serde(default)]
    risk_assessment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review_by: Option<String>,
}

fn reason_to_wire(text: &str) -> Result<api::RestrictionReason, String> {
    let reason = ProtectiveReason::from_str(text).map_err(|e| format!("protective_reason: {e}"))?;
    Ok(match reason {
        ProtectiveReason::InjuryToChild => api::RestrictionReason::InjuryToChild,
        ProtectiveReason::InjuryToOthers => api::RestrictionReason::InjuryToOthers,
        ProtectiveReason::PropertyDamage => api::RestrictionReason::PropertyDamage,
        ProtectiveReason::PreventOffence => api::RestrictionReason::PreventOffence,
    })
}

fn reason_from_wire(value: i32) -> Option<String> {
    let reason = match api::RestrictionReason::try_from(value).ok()? {
        api::RestrictionReason::Unspecified => return None,
        api::RestrictionReason::InjuryToChild => ProtectiveReason::InjuryToChild,
        api::RestrictionReason::InjuryToOthers => ProtectiveReason::InjuryToOthers,
        api::RestrictionReason::PropertyDamage => ProtectiveReason::PropertyDamage,
        api::RestrictionReason::PreventOffence => ProtectiveReason::PreventOffence,
    };
    Some(reason.as_str().to_string())
}

fn consult_to_wire(c: Option<ConsultFile>) -> Option<api::ConsultationRecord> {
    use api::consultation_record::Outcome;
    let outcome = match c? {
        ConsultFile::Consulted { who, when, notes } => {
            Outcome::Consulted(api::Consulted { who, when, notes })
        }
        ConsultFile::NotConsulted { reason } => Outcome::NotConsulted(api::NotConsulted { reason }),
    };
    Some(api::ConsultationRecord {
        outcome: Some(outcome),
    })
}

fn consult_from_wire(c: &Option<api::ConsultationRecord>) -> Option<ConsultFile> {
    use api::consultation_record::Outcome;
    Some(match c.as_ref()?.outcome.as_ref()? {
        Outcome::Consulted(x) => ConsultFile::Consulted {
            who: x.who.clone(),
            when: x.when.clone(),
            notes: x.notes.clone(),
        },
        Outcome::NotConsulted(x) => ConsultFile::NotConsulted {
            reason: x.reason.clone(),
        },
    })
}

fn arrangement_to_wire(a: ArrangementFile) -> api::Arrangement {
    api::Arrangement {
        with_whom: a.with_whom,
        details: a.details,
        risk_assessment_id: a.risk_assessment,
        review_by: a.review_by.unwrap_or_default(),
    }
}

fn arrangement_from_wire(a: &api::Arrangement) -> ArrangementFile {
    ArrangementFile {
        with_whom: a.with_whom.clone(),
        details: a.details.clone(),
        risk_assessment: a.risk_assessment_id.clone(),
        review_by: some_text(&a.review_by),
    }
}

fn agreement_to_wire(a: AgreementFile) -> api::Agreement {
    api::Agreement {
        who: a.who,
        when: a.when,
    }
}

fn agreement_from_wire(a: &api::Agreement) -> AgreementFile {
    AgreementFile {
        who: a.who.clone(),
        when: a.when.clone(),
    }
}

impl PlanFile {
    fn into_wire(self) -> Result<api::PlacementPlan, String> {
        use api::{camera_permission, web_permission};
        let protective_reason = match self.protective_reason.as_deref().map(str::trim) {
            None | Some("") => api::RestrictionReason::Unspecified,
            Some(text) => reason_to_wire(text)?,
        };
        let s = self.section;
        let camera = match s.camera {
            CameraFile::Off => camera_permission::State::Off(api::CameraOff {}),
            CameraFile::On {
                review_by,
                risk_assessment,
                placing_authority_agreement,
                parent_consultation,
            } => camera_permission::State::Allowed(api::CameraAllowed {
                placing_authority_agreement: placing_authority_agreement.map(agreement_to_wire),
                parent_consultation: parent_consultation.map(agreement_to_wire),
                review_by,
                risk_assessment_id: risk_assessment,
            }),
        };
        let web = match s.web {
            WebFile::Off => web_permission::State::Off(api::WebOff {}),
            WebFile::Filtered {
                filter_profile,
                risk_assessment,
                review_by,
                social_sites,
            } => web_permission::State::Filtered(api::WebFiltered {
                filter_profile,
                risk_assessment_id: risk_assessment,
                social_sites: social_sites
                    .into_iter()
                    .map(|site| api::SocialSite {
                        domain: site.domain,
                        risk_assessment_id: site.risk_assessment,
                        review_by: site.review_by,
                    })
                    .collect(),
                review_by: review_by.unwrap_or_default(),
            }),
        };
        Ok(api::PlacementPlan {
            reason: self.reason,
            consultation: Some(api::PlanConsultation {
                social_worker: consult_to_wire(self.consultation.social_worker),
                parents: consult_to_wire(self.consultation.parents),
            }),
            shared_with: Some(api::SharedWith {
                child: self.shared_with.child,
                social_worker: self.shared_with.social_worker,
                others: self.shared_with.others,
            }),
            child_views: self.child_views,
            views_not_sought: self.views_not_sought,
            review_by: self.review_by.unwrap_or_default(),
            protective_reason: protective_reason as i32,
            evidence: self.evidence,
            risk_decisions: self
                .risk_decisions
                .into_iter()
                .map(|d| api::RiskDecision {
                    contact: d.contact,
                    decided_by: d.decided_by,
                    social_worker_agreed: d.social_worker_agreed,
                    decision: d.decision,
                    order_terms: d.order_terms,
                })
                .collect(),
            communication: Some(api::CommunicationSection {
                contacts: s
                    .contacts
                    .into_iter()
                    .map(|c| api::ContactPermission {
                        name: c.name,
                        relationship: c.relationship,
                        addresses: c
                            .addresses
                            .into_iter()
                            .map(|a| api::ContactAddress {
                                channel: match a.channel {
                                    ChannelFile::Call => api::ContactChannel::Call,
                                    ChannelFile::Sms => api::ContactChannel::Sms,
                                    ChannelFile::Messaging => api::ContactChannel::Messaging,
                                } as i32,
                                address: a.address,
                                app: a.app,
                            })
                            .collect(),
                        windows: c
                            .windows
                            .into_iter()
                            .map(|w| api::TimeWindow {
                                start_minute: w.start_minute,
                                end_minute: w.end_minute,
                                // The wire numbers days as the form does (ISO 8601); the
                                // controller refuses a number that is not a day, naming it.
                                weekdays: w.weekdays.into_iter().map(i32::from).collect(),
                            })
                            .collect(),
                        risk_assessment_id: c.risk_assessment,
                        review_by: c.review_by.unwrap_or_default(),
                    })
                    .collect(),
                camera: Some(api::CameraPermission {
                    state: Some(camera),
                }),
                web: Some(api::WebPermission { state: Some(web) }),
                apps: Some(api::AppPermission {
                    mode: if s.apps.default_allow {
                        api::AppMode::UnlessBlocked
                    } else {
                        api::AppMode::OnlyAllowed
                    } as i32,
                    allowed: s.apps.allowed,
                    blocked: s.apps.blocked,
                    risk_assessment_id: s.apps.risk_assessment,
                }),
                letters: s.letters.into_iter().map(arrangement_to_wire).collect(),
                face_to_face: s
                    .face_to_face
                    .into_iter()
                    .map(arrangement_to_wire)
                    .collect(),
            }),
        })
    }

    fn from_wire(p: &api::PlacementPlan) -> PlanFile {
        use api::{camera_permission, web_permission};
        let default = api::CommunicationSection::default();
        let s = p.communication.as_ref().unwrap_or(&default);
        let camera = match s.camera.as_ref().and_then(|c| c.state.as_ref()) {
            None | Some(camera_permission::State::Off(_)) => CameraFile::Off,
            Some(camera_permission::State::Allowed(on)) => CameraFile::On {
                review_by: on.review_by.clone(),
                risk_assessment: on.risk_assessment_id.clone(),
                placing_authority_agreement: on
                    .placing_authority_agreement
                    .as_ref()
                    .map(agreement_from_wire),
                parent_consultation: on.parent_consultation.as_ref().map(agreement_from_wire),
            },
        };
        let web = match s.web.as_ref().and_then(|w| w.state.as_ref()) {
            None | Some(web_permission::State::Off(_)) => WebFile::Off,
            Some(web_permission::State::Filtered(f)) => WebFile::Filtered {
                filter_profile: f.filter_profile.clone(),
                risk_assessment: f.risk_assessment_id.clone(),
                review_by: some_text(&f.review_by),
                social_sites: f
                    .social_sites
                    .iter()
                    .map(|site| SocialSiteFile {
                        domain: site.domain.clone(),
                        risk_assessment: site.risk_assessment_id.clone(),
                        review_by: site.review_by.clone(),
                    })
                    .collect(),
            },
        };
        let apps = match &s.apps {
            None => AppsFile::default(),
            Some(a) => AppsFile {
                default_allow: a.mode != api::AppMode::OnlyAllowed as i32,
                allowed: a.allowed.clone(),
                blocked: a.blocked.clone(),
                risk_assessment: a.risk_assessment_id.clone(),
            },
        };
        let consultation = p.consultation.clone().unwrap_or_default();
        let shared_with = p.shared_with.clone().unwrap_or_default();
        PlanFile {
            reason: p.reason.clone(),
            review_by: some_text(&p.review_by),
            child_views: p.child_views.clone(),
            views_not_sought: p.views_not_sought.clone(),
            protective_reason: reason_from_wire(p.protective_reason),
            evidence: p.evidence.clone(),
            risk_decisions: p
                .risk_decisions
                .iter()
                .map(|d| RiskDecisionFile {
                    contact: d.contact.clone(),
                    decided_by: d.decided_by.clone(),
                    social_worker_agreed: d.social_worker_agreed.clone(),
                    decision: d.decision.clone(),
                    order_terms: d.order_terms.clone(),
                })
                .collect(),
            consultation: ConsultationFile {
                social_worker: consult_from_wire(&consultation.social_worker),
                parents: consult_from_wire(&consultation.parents),
            },
            shared_with: SharedWithFile {
                child: shared_with.child,
                social_worker: shared_with.social_worker,
                others: shared_with.others,
            },
            section: SectionFile {
                contacts: s
                    .contacts
                    .iter()
                    .map(|c| ContactFile {
                        name: c.name.clone(),
                        relationship: c.relationship.clone(),
                        risk_assessment: c.risk_assessment_id.clone(),
                        review_by: some_text(&c.review_by),
                        addresses: c
                            .addresses
                            .iter()
                            .map(|a| AddressFile {
                                channel: match api::ContactChannel::try_from(a.channel) {
                                    Ok(api::ContactChannel::Sms) => ChannelFile::Sms,
                                    Ok(api::ContactChannel::Messaging) => ChannelFile::Messaging,
                                    _ => ChannelFile::Call,
                                },
                                address: a.address.clone(),
                                app: a.app.clone(),
                            })
                            .collect(),
                        windows: c
                            .windows
                            .iter()
                            .map(|w| WindowFile {
                                start_minute: w.start_minute,
                                end_minute: w.end_minute,
                                weekdays: w
                                    .weekdays
                                    .iter()
                                    .filter_map(|d| u8::try_from(*d).ok())
                                    .collect(),
                            })
                            .collect(),
                    })
                    .collect(),
                camera,
                web,
                apps,
                letters: s.letters.iter().map(arrangement_from_wire).collect(),
                face_to_face: s.face_to_face.iter().map(arrangement_from_wire).collect(),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The risk assessment form (see templates/risk.toml)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RiskFile {
    #[serde(default)]
    kind: Option<KindFile>,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    review_by: Option<String>,
    #[serde(default)]
    considerations: ConsiderationsFile,
    #[serde(default)]
    participants: ParticipantsFile,
    #[serde(default)]
    checklist: ChecklistFile,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindFile {
    Planned,
    OnTheSpot,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsiderationsFile {
    #[serde(default)]
    background: String,
    #[serde(default)]
    circumstances_on_the_day: String,
    #[serde(default)]
    risks_to_or_from_contacts: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantsFile {
    #[serde(default)]
    social_worker: Option<String>,
    #[serde(default)]
    it_specialist: Option<String>,
    #[serde(default)]
    manager: Option<String>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AnswerFile {
    Yes,
    No,
    NotKnown,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnsweredFile {
    answer: AnswerFile,
    #[serde(default)]
    notes: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecklistFile {
    contact_order: Option<AnsweredFile>,
    protection_plan_or_child_in_need: Option<AnsweredFile>,
    care_plan_placement_plan_or_chronology: Option<AnsweredFile>,
    parents_consulted_or_consented: Option<AnsweredFile>,
    contact_known: Option<AnsweredFile>,
    contact_is_adult: Option<AnsweredFile>,
    contact_poses_risk: Option<AnsweredFile>,
    child_may_be_harmed: Option<AnsweredFile>,
    child_may_harm_others: Option<AnsweredFile>,
}

fn answered_to_wire(a: Option<AnsweredFile>) -> Option<api::ChecklistAnswer> {
    a.map(|a| api::ChecklistAnswer {
        answer: match a.answer {
            AnswerFile::Yes => api::Answer::Yes,
            AnswerFile::No => api::Answer::No,
            AnswerFile::NotKnown => api::Answer::NotKnown,
        } as i32,
        notes: a.notes,
    })
}

impl RiskFile {
    fn into_wire(self) -> api::RiskAssessment {
        let c = self.checklist;
        api::RiskAssessment {
            kind: match self.kind {
                None => api::RiskAssessmentKind::Unspecified,
                Some(KindFile::Planned) => api::RiskAssessmentKind::Planned,
                Some(KindFile::OnTheSpot) => api::RiskAssessmentKind::OnTheSpot,
            } as i32,
            considerations: Some(api::RiskConsiderations {
                background: self.considerations.background,
                circumstances_on_the_day: self.considerations.circumstances_on_the_day,
                risks_to_or_from_contacts: self.considerations.risks_to_or_from_contacts,
            }),
            checklist: Some(api::RiskChecklist {
                contact_order: answered_to_wire(c.contact_order),
                protection_plan_or_child_in_need: answered_to_wire(
                    c.protection_plan_or_child_in_need,
                ),
                care_plan_placement_plan_or_chronology: answered_to_wire(
                    c.care_plan_placement_plan_or_chronology,
                ),
                parents_consulted_or_consented: answered_to_wire(c.parents_consulted_or_consented),
                contact_known: answered_to_wire(c.contact_known),
                contact_is_adult: answered_to_wire(c.contact_is_adult),
                contact_poses_risk: answered_to_wire(c.contact_poses_risk),
                child_may_be_harmed: answered_to_wire(c.child_may_be_harmed),
                child_may_harm_others: answered_to_wire(c.child_may_harm_others),
            }),
            outcome: self.outcome,
            review_by: self.review_by.unwrap_or_default(),
            participants: Some(api::RiskParticipants {
                social_worker: self.participants.social_worker,
                it_specialist: self.participants.it_specialist,
                manager: self.participants.manager,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::plans::{PLAN_TEMPLATE, RISK_TEMPLATE};

    #[test]
    fn toml_and_json_read_the_same() {
        let from_toml =
            plan_from_text("reason = \"Nan asked\"\n[section.camera]\nstate = \"off\"\n").unwrap();
        let from_json = plan_from_text(
            "{\"reason\":\"Nan asked\",\"section\":{\"camera\":{\"state\":\"off\"}}}",
        )
        .unwrap();
        assert_eq!(from_toml, from_json);
        assert!(plan_from_text("reason = ").unwrap_err().contains("line 1"));
    }

    #[test]
    fn the_templates_read_as_messages() {
        let plan = plan_from_text(PLAN_TEMPLATE).unwrap();
        let section = plan.communication.as_ref().unwrap();
        assert_eq!(section.contacts[0].name, "Nan");
        assert_eq!(
            section.contacts[0].addresses[1].channel,
            api::ContactChannel::Sms as i32
        );
        assert_eq!(section.contacts[0].windows[0].start_minute, 960);
        assert_eq!(section.letters[0].with_whom, "Dad");
        let risk = risk_from_text(RISK_TEMPLATE).unwrap();
        assert_eq!(risk.kind, api::RiskAssessmentKind::Planned as i32);
        let known = risk
            .checklist
            .as_ref()
            .unwrap()
            .contact_known
            .as_ref()
            .unwrap();
        assert_eq!(known.answer, api::Answer::Yes as i32);
    }

    // A misspelt key is refused by name, on its line, with the key that was meant: quietly
    // dropping it would leave the plan saying less than the manager wrote.
    #[test]
    fn unknown_keys_are_refused_by_name_with_the_line_and_what_was_meant() {
        let cases = [
            (
                PLAN_TEMPLATE.replace("child_views =", "child_view ="),
                "`child_view`",
                "`child_views`",
            ),
            (
                PLAN_TEMPLATE.replace(
                    "relationship = \"grandmother\"",
                    "relation = \"grandmother\"",
                ),
                "`relation`",
                "`relationship`",
            ),
            (
                PLAN_TEMPLATE.replace("[shared_with]", "[shared_with]\nsocial_workers = true"),
                "`social_workers`",
                "`social_worker`",
            ),
            (
                PLAN_TEMPLATE.replace("end_minute = 1200", "end_minute = 1200, weekday = [1]"),
                "`weekday`",
                "`weekdays`",
            ),
            (
                PLAN_TEMPLATE.replace("channel = \"sms\"", "channel = \"smss\""),
                "`smss`",
                "`sms`",
            ),
        ];
        for (text, given, meant) in cases {
            let err = plan_from_text(&text).unwrap_err();
            assert!(err.starts_with("line "), "{err}");
            assert!(
                err.contains(given) && err.contains(&format!("did you mean {meant}?")),
                "{err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        // The line is the one the key is on.
        let text = PLAN_TEMPLATE.replace("child_views =", "child_view =");
        let line = text
            .lines()
            .position(|l| l.starts_with("child_view ="))
            .unwrap()
            + 1;
        assert!(
            plan_from_text(&text)
                .unwrap_err()
                .starts_with(&format!("line {line}:"))
        );

        let risk = RISK_TEMPLATE.replace("outcome =", "outcom =");
        let err = risk_from_text(&risk).unwrap_err();
        assert!(
            err.contains("unknown key `outcom`; did you mean `outcome`?"),
            "{err}"
        );
        let risk = RISK_TEMPLATE.replace("[checklist.contact_known]", "[checklist.contact_knwon]");
        let err = risk_from_text(&risk).unwrap_err();
        assert!(err.contains("did you mean `contact_known`?"), "{err}");
        // Far from every key: the keys allowed are listed instead.
        let err = plan_from_text("colour = \"blue\"\n").unwrap_err();
        assert!(
            err.contains("unknown key `colour`; use one of `reason`"),
            "{err}"
        );
        // The same in JSON, with its line.
        let err = plan_from_text("{\n\"reason\": \"x\",\n\"reasn\": \"y\"\n}").unwrap_err();
        assert!(
            err.starts_with("line 3: unknown key `reasn`; did you mean `reason`?"),
            "{err}"
        );
        // Under a state, the keys of that state.
        let err =
            plan_from_text("[consultation.parents]\nstate = \"not_consulted\"\nwho = \"Mum\"\n")
                .unwrap_err();
        assert!(err.contains("unknown key `who`"), "{err}");
    }

    #[test]
    fn a_protective_reason_that_is_not_one_of_the_four_is_refused() {
        let err = plan_from_text("protective_reason = \"bad behaviour\"\n").unwrap_err();
        assert!(
            err.contains("protective_reason") && err.contains("injury-to-child"),
            "{err}"
        );
        let plan = plan_from_text("protective_reason = \"injury_to_child\"\n").unwrap();
        assert_eq!(
            plan.protective_reason,
            api::RestrictionReason::InjuryToChild as i32
        );
    }

    // `haven plan show --toml` writes the form `haven plan revise` reads: the same message back.
    #[test]
    fn a_plan_written_as_toml_reads_back_the_same() {
        let mut text = PLAN_TEMPLATE.to_string();
        text = text
            .replace("# protective_reason", "protective_reason")
            .replace("# evidence", "evidence")
            .replace("# views_not_sought", "views_not_sought")
            .replace("[section.web]\nstate = \"off\"", "[section.web]\nstate = \"filtered\"\nfilter_profile = \"strict\"\nrisk_assessment = \"ra-1\"\nsocial_sites = [{ domain = \"instagram.com\", risk_assessment = \"ra-1\", review_by = \"2027-03-01\" }]")
            .replace("[section.camera]\nstate = \"off\"", "[section.camera]\nstate = \"on\"\nreview_by = \"2027-03-01\"\nrisk_assessment = \"ra-1\"\nplacing_authority_agreement = { who = \"K\", when = \"2026-11-20\" }\nparent_consultation = { who = \"Mum\", when = \"2026-11-20\" }");
        let plan = plan_from_text(&text).unwrap();
        let written = plan_to_toml(&plan).unwrap();
        assert_eq!(plan_from_text(&written).unwrap(), plan, "{written}");
        assert!(
            written.contains("protective_reason = \"injury-to-child\""),
            "{written}"
        );
    }
}
