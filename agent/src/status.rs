//! `haven-agent status`: what the state folder says, in plain words or JSON.
//!
//! Reads only local files, so it works offline and answers "what is this device allowed to
//! do right now, and why?" for a child, a carer or an engineer at the device. It also shows
//! the child's own requests to staff and the answers they gave (Regulation 7).

use haven_proto::agent::v1::{Contact, DevicePolicy};
use serde::Serialize;

use crate::core::{self, AppMode};
use crate::requests::{self, RequestRecord, RequestSpool, RequestState};
use crate::state::{StateDir, StateError};

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub state_dir: String,
    pub enrolled: bool,
    pub retired: bool,
    pub device_id: Option<String>,
    pub child_display_name: Option<String>,
    pub controller_url: Option<String>,
    pub enrolled_at: Option<String>,
    pub retired_at: Option<String>,
    pub retired_reason: Option<String>,
    /// When this device's certificate expires (D7); it is renewed while the device is online.
    pub certificate_expires: Option<String>,
    /// Set once the certificate has expired: the device cannot connect and must be enrolled
    /// again with a new code. The cached policy stays enforced meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_expired: Option<String>,
    pub policy: PolicyReport,
    /// The child's requests, oldest first.
    pub requests: Vec<RequestReport>,
    /// Why the requests could not be read, if they could not (the rest is still shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_problem: Option<String>,
}

/// One of the child's requests and, once there is one, the staff's answer.
#[derive(Debug, Clone, Serialize)]
pub struct RequestReport {
    pub id: String,
    pub text: String,
    /// "waiting_to_send", "sent" or "answered".
    pub state: RequestState,
    pub made_at: Option<String>,
    /// "agreed", "not agreed" or "agreed in part" as staff chose; `null` until answered.
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<String>,
}

impl From<RequestRecord> for RequestReport {
    fn from(r: RequestRecord) -> Self {
        let answer = r.answer;
        Self {
            id: r.request.id,
            text: r.request.text,
            state: r.state,
            made_at: time_of(r.request.made_at_unix_ms),
            decision: answer.as_ref().map(|a| a.decision.clone()),
            reason: answer.as_ref().map(|a| a.reason.clone()),
            answered_by: answer.as_ref().map(|a| a.answered_by.clone()),
            answered_at: answer.as_ref().and_then(|a| time_of(a.answered_at_unix_ms)),
        }
    }
}

/// The policy in force, as enforced (lockdown and missing rules already taken into account).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub version: u64,
    /// "controller" for a policy from the controller, "safe_default" for the built-in one.
    pub source: &'static str,
    pub issued_at: Option<String>,
    pub camera: RuleReport,
    pub web: WebReport,
    pub contacts: Vec<ContactReport>,
    pub protected_contacts: Vec<ContactReport>,
    pub apps: AppMode,
    pub lockdown: Option<LockdownReport>,
    pub explanations: Vec<ExplanationReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub allowed: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebReport {
    pub allowed: bool,
    pub filter_profile: String,
    pub blocked_categories: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub blocked_domains: Vec<String>,
    pub reason: String,
    /// Categories the policy blocks that the controller has not yet sent a list for: the
    /// web stays off until they arrive (WB4), so nothing here claims they are blocked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for_lists: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactReport {
    pub name: String,
    pub relationship: String,
    /// When they can be contacted, in words ("between 4pm and 8pm"); empty means any time.
    pub times: Vec<String>,
    /// The numbers to ring, for the people who can always be reached (a child in trouble
    /// should not have to look up Childline's number); empty for everyone else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockdownReport {
    pub channels: Vec<String>,
    pub reason: String,
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExplanationReport {
    pub topic: String,
    pub text: String,
}

/// Reads the state folder. A folder that does not exist yet just means "not enrolled".
pub fn gather(state: &StateDir) -> Result<StatusReport, StateError> {
    let config = state.load_config()?;
    let policy = state.load_policy()?.unwrap_or_else(core::safe_default);
    let retired = config.as_ref().is_some_and(|c| c.retired_at.is_some());
    // A problem with the requests must not hide what the device allows.
    let (requests, requests_problem) = match RequestSpool::new(state).records() {
        Ok(records) => (records.into_iter().map(RequestReport::from).collect(), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let not_after = config
        .as_ref()
        .filter(|_| !retired)
        .and_then(|_| state.current_certificate().ok())
        .and_then(|pem| crate::identity::certificate_not_after(&pem));
    let now = jiff::Timestamp::now().as_millisecond();
    Ok(StatusReport {
        certificate_expires: not_after.map(crate::identity::when),
        certificate_expired: not_after
            .filter(|at| *at <= now)
            .map(crate::identity::expired_message),
        state_dir: state.root().display().to_string(),
        enrolled: config.is_some() && !retired,
        retired,
        device_id: config.as_ref().map(|c| c.device_id.clone()),
        child_display_name: config.as_ref().map(|c| c.child_display_name.clone()),
        controller_url: config.as_ref().map(|c| c.controller_url.clone()),
        enrolled_at: config.as_ref().map(|c| c.enrolled_at.clone()),
        retired_at: config.as_ref().and_then(|c| c.retired_at.clone()),
        retired_reason: config.as_ref().and_then(|c| c.retired_reason.clone()),
        policy: with_lists(
            policy_report(&policy),
            &crate::web::received::waiting_in(&state.root().join("filter-lists")),
        ),
        requests,
        requests_problem,
    })
}

fn time_of(unix_ms: i64) -> Option<String> {
    if unix_ms <= 0 {
        return None;
    }
    jiff::Timestamp::from_millisecond(unix_ms)
        .ok()
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

fn contacts(list: &[Contact]) -> Vec<ContactReport> {
    list.iter().map(contact_report).collect()
}

fn contact_report(c: &Contact) -> ContactReport {
    ContactReport {
        name: c.name.clone(),
        relationship: c.relationship.clone(),
        times: c
            .windows
            .iter()
            .map(crate::contacts::describe_window)
            .collect(),
        numbers: Vec::new(),
    }
}

/// Everyone the device lets through whatever else is in force, with their numbers: exactly
/// what `contacts::may_contact` always allows (R19).
fn always_reachable(policy: &DevicePolicy) -> Vec<ContactReport> {
    core::always_reachable(policy)
        .iter()
        .map(|c| {
            let mut numbers: Vec<String> = Vec::new();
            for a in &c.addresses {
                if !numbers.contains(&a.address) {
                    numbers.push(a.address.clone());
                }
            }
            ContactReport {
                numbers,
                ..contact_report(c)
            }
        })
        .collect()
}

/// The report with the categories still waiting for the controller's lists (`waiting`)
/// taken out of what is blocked (WB4: the child is never told of protection the device does
/// not have yet); the web filter keeps the web off until they arrive, and so does the report.
pub fn with_lists(mut report: PolicyReport, waiting: &[String]) -> PolicyReport {
    use crate::web::categories::canonical_category;
    let (waiting, have): (Vec<String>, Vec<String>) =
        std::mem::take(&mut report.web.blocked_categories)
            .into_iter()
            .partition(|c| waiting.iter().any(|w| *w == canonical_category(c)));
    report.web.blocked_categories = have;
    if report.web.allowed && !waiting.is_empty() {
        report.web.allowed = false;
        report.web.reason = format!(
            "The internet comes on once the safety filter's lists for {} have arrived.",
            waiting.join(", ")
        );
    }
    report.web.waiting_for_lists = waiting;
    report
}

/// What `policy` allows, for display.
pub fn policy_report(policy: &DevicePolicy) -> PolicyReport {
    let e = core::effective(policy);
    let lockdown = policy.lockdown.as_ref().filter(|l| l.active);
    let lockdown_reason = |channel: &str| {
        lockdown
            .filter(|l| l.channels.iter().any(|c| c.eq_ignore_ascii_case(channel)))
            .map(|l| l.reason.clone())
    };
    let camera_reason = lockdown_reason("camera")
        .or_else(|| policy.camera.as_ref().map(|c| c.reason.clone()))
        .unwrap_or_default();
    let web = policy.web.clone().unwrap_or_default();
    let web_reason = lockdown_reason("web").unwrap_or(web.reason);
    let contacts_locked = e.contacts == 0 && !policy.contacts.is_empty();
    PolicyReport {
        version: policy.version,
        source: if policy.version == 0 && policy.issued_at_unix_ms == 0 {
            "safe_default"
        } else {
            "controller"
        },
        issued_at: time_of(policy.issued_at_unix_ms),
        camera: RuleReport {
            allowed: e.camera_allowed,
            reason: camera_reason,
        },
        web: WebReport {
            allowed: e.web_allowed,
            filter_profile: e.web_filter_profile.clone(),
            blocked_categories: web.blocked_categories,
            allowed_domains: web.allowed_domains,
            blocked_domains: web.blocked_domains,
            reason: web_reason,
            waiting_for_lists: Vec::new(),
        },
        contacts: if contacts_locked {
            Vec::new()
        } else {
            contacts(&policy.contacts)
        },
        protected_contacts: always_reachable(policy),
        apps: e.apps,
        lockdown: lockdown.map(|l| LockdownReport {
            channels: l.channels.clone(),
            reason: l.reason.clone(),
            until: time_of(l.until_unix_ms),
        }),
        explanations: policy
            .explanations
            .iter()
            .map(|x| ExplanationReport {
                topic: x.topic.clone(),
                text: x.text.clone(),
            })
            .collect(),
    }
}

fn people(list: &[ContactReport]) -> String {
    list.iter()
        .map(|c| {
            let mut who = if c.relationship.is_empty() {
                c.name.clone()
            } else {
                format!("{} ({})", c.name, c.relationship)
            };
            if !c.numbers.is_empty() {
                who.push_str(&format!(" on {}", c.numbers.join(" or ")));
            }
            if !c.times.is_empty() {
                who.push_str(&format!(" {}", c.times.join(" or ")));
            }
            who
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "calls and messages" for the lockdown channels that concern contacts, if any.
fn paused_contact_channels(channels: &[String]) -> Option<&'static str> {
    let has = |c: &str| channels.iter().any(|x| x.trim().eq_ignore_ascii_case(c));
    match (has("calls"), has("messages")) {
        (true, true) => Some("calls and messages"),
        (true, false) => Some("calls"),
        (false, true) => Some("messages"),
        (false, false) => None,
    }
}

fn with_reason(text: &str, reason: &str) -> String {
    if reason.trim().is_empty() {
        text.to_string()
    } else {
        format!("{text} — {}", reason.trim())
    }
}

/// The report in plain words, as `haven-agent status` prints it.
pub fn render_text(r: &StatusReport) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let child = r
        .child_display_name
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "this child".to_string());
    if r.retired {
        let when = r.retired_at.as_deref().unwrap_or("earlier");
        line(format!(
            "This device was removed from Haven by staff ({when}). It no longer syncs; the safe \
             default stays in force until it is enrolled again."
        ));
        if let Some(reason) = r.retired_reason.as_deref() {
            line(format!("  Reason given: {reason}"));
        }
    } else if r.enrolled {
        line(format!("This device is enrolled in Haven for {child}."));
        line(format!(
            "  Device:      {}",
            r.device_id.as_deref().unwrap_or("")
        ));
        line(format!(
            "  Controller:  {}",
            r.controller_url.as_deref().unwrap_or("")
        ));
        line(format!(
            "  Enrolled:    {}",
            r.enrolled_at.as_deref().unwrap_or("")
        ));
        match (&r.certificate_expired, &r.certificate_expires) {
            (Some(expired), _) => {
                let mut words = expired.clone();
                if let Some(first) = words.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                line(format!("  {words}."));
            }
            (None, Some(at)) => line(format!(
                "  Certificate: valid until {at} (renewed automatically while online)"
            )),
            (None, None) => {}
        }
    } else {
        line(
            "This device is not enrolled in Haven yet. To enroll it, run the `haven-agent \
             enroll` command staff gave you."
                .to_string(),
        );
    }
    line(format!("  State folder: {}", r.state_dir));
    line(String::new());

    let p = &r.policy;
    if p.source == "safe_default" {
        line(
            "Policy in force: the safe default (no policy has been received from the controller)"
                .to_string(),
        );
    } else {
        let issued = p
            .issued_at
            .as_deref()
            .map(|t| format!(", issued {t}"))
            .unwrap_or_default();
        line(format!(
            "Policy in force: policy version {}{issued}",
            p.version
        ));
    }
    let camera = if p.camera.allowed {
        "allowed"
    } else {
        "not allowed"
    };
    line(format!(
        "  Camera:    {}",
        with_reason(camera, &p.camera.reason)
    ));
    let web = if p.web.allowed {
        let mut text = format!(
            "allowed, filtered by the \"{}\" profile",
            p.web.filter_profile
        );
        if !p.web.blocked_categories.is_empty() {
            text.push_str(&format!(
                "; blocked: {}",
                p.web.blocked_categories.join(", ")
            ));
        }
        if !p.web.allowed_domains.is_empty() {
            text.push_str(&format!(
                "; also allowed: {}",
                p.web.allowed_domains.join(", ")
            ));
        }
        if !p.web.blocked_domains.is_empty() {
            text.push_str(&format!(
                "; sites blocked: {}",
                p.web.blocked_domains.join(", ")
            ));
        }
        text
    } else {
        "not allowed".to_string()
    };
    line(format!("  Internet:  {}", with_reason(&web, &p.web.reason)));
    let paused = p
        .lockdown
        .as_ref()
        .and_then(|l| paused_contact_channels(&l.channels));
    if p.contacts.is_empty() {
        line("  Contacts:  only the people who can always be reached".to_string());
    } else {
        let note = paused
            .map(|what| format!(" ({what} are paused for now)"))
            .unwrap_or_default();
        line(format!("  Contacts:  {}{note}", people(&p.contacts)));
    }
    if p.protected_contacts.is_empty() {
        line("  Always reachable: nobody listed yet".to_string());
    } else {
        line(format!(
            "  Always reachable: {}",
            people(&p.protected_contacts)
        ));
    }
    let apps = match &p.apps {
        AppMode::AllowUnlessBlocked { blocked } if blocked.is_empty() => "all allowed".to_string(),
        AppMode::AllowUnlessBlocked { blocked } => {
            format!("all allowed except {}", blocked.join(", "))
        }
        AppMode::OnlyAllowed { allowed } if allowed.is_empty() => "none allowed".to_string(),
        AppMode::OnlyAllowed { allowed } => format!("only {}", allowed.join(", ")),
    };
    line(format!("  Apps:      {apps}"));
    match &p.lockdown {
        None => line("  Lockdown:  none".to_string()),
        Some(l) => {
            let until = l
                .until
                .as_deref()
                .map(|u| format!(" (planned until {u})"))
                .unwrap_or_default();
            line(format!(
                "  Lockdown:  {}",
                with_reason(
                    &format!("active for {}{until}", l.channels.join(", ")),
                    &l.reason
                )
            ));
            line(
                "             This is for a short time, to keep you safe; staff will lift it as \
                 soon as they can."
                    .to_string(),
            );
            if paused.is_some() && !p.protected_contacts.is_empty() {
                line(format!(
                    "             You can still always contact {}.",
                    p.protected_contacts
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if !p.explanations.is_empty() {
        line(String::new());
        line(format!("What {child} is told:"));
        for x in &p.explanations {
            if x.topic.is_empty() {
                line(format!("  {}", x.text));
            } else {
                line(format!("  {}: {}", x.topic, x.text));
            }
        }
    }
    line(String::new());
    render_requests(r, &mut line);
    out
}

/// The child's requests, in words meant for the child.
fn render_requests(r: &StatusReport, line: &mut impl FnMut(String)) {
    if let Some(problem) = &r.requests_problem {
        line(format!(
            "Your requests could not be read just now ({problem})."
        ));
        return;
    }
    if r.requests.is_empty() {
        line(
            "Your requests: none yet. To ask staff for something or tell them what you think, \
             run: haven-agent request \"what you would like to say\""
                .to_string(),
        );
        return;
    }
    line("Your requests:".to_string());
    for q in &r.requests {
        let when = q
            .made_at
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        if q.text.is_empty() {
            line(format!("  A request you made{when}"));
        } else {
            line(format!("  \"{}\"{when}", q.text.replace('\n', " ")));
        }
        let news = match q.state {
            RequestState::WaitingToSend => "Saved on this device; it will reach the staff as soon \
                                            as this device is connected."
                .to_string(),
            RequestState::Sent => {
                "The staff have it; their answer will show here when they reply.".to_string()
            }
            RequestState::Answered => {
                let answer = requests::StoredAnswer {
                    request_id: q.id.clone(),
                    decision: q.decision.clone().unwrap_or_default(),
                    reason: q.reason.clone().unwrap_or_default(),
                    answered_by: String::new(),
                    answered_at_unix_ms: 0,
                };
                let mut by = Vec::new();
                if let Some(who) = q.answered_by.as_deref().filter(|w| !w.trim().is_empty()) {
                    by.push(format!("answered by {}", who.trim()));
                }
                if let Some(at) = q.answered_at.as_deref() {
                    by.push(at.to_string());
                }
                let by = if by.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", by.join(", "))
                };
                format!("{}{by}", requests::describe_answer(&answer))
            }
        };
        line(format!("    {news}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_proto::agent::v1::{CameraRule, Explanation, Lockdown, WebRule};

    #[test]
    fn requests_show_where_they_are_and_the_answers_in_kind_words() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let spool = RequestSpool::new(&state);
        let waiting = spool.submit("More pocket money please", 3_000).unwrap();
        let sent = spool
            .submit("Can I join the football club?", 2_000)
            .unwrap();
        spool.mark_received(&sent.id).unwrap();
        let yes = spool
            .submit("I would like to phone my nan on Sundays", 1_000)
            .unwrap();
        spool
            .save_answer(&requests::StoredAnswer {
                request_id: yes.id.clone(),
                decision: "agreed".into(),
                reason: "every Sunday at 5pm".into(),
                answered_by: "Jo Smith".into(),
                answered_at_unix_ms: 1_740_000_000_000,
            })
            .unwrap();
        let no = spool.submit("Can I stay up till midnight?", 4_000).unwrap();
        spool
            .save_answer(&requests::StoredAnswer {
                request_id: no.id.clone(),
                decision: "not agreed".into(),
                reason: "you need your sleep for school".into(),
                answered_by: "Sam Lee".into(),
                answered_at_unix_ms: 0,
            })
            .unwrap();

        let report = gather(&state).unwrap();
        let text = render_text(&report);
        for expected in [
            "Your requests:",
            "\"I would like to phone my nan on Sundays\"",
            "Staff said yes: every Sunday at 5pm (answered by Jo Smith, 2025-02-19 21:20 UTC)",
            "The staff have it; their answer will show here",
            "Saved on this device; it will reach the staff as soon as this device is connected.",
            "Staff said no, because you need your sleep for school (answered by Sam Lee)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        let json = serde_json::to_value(&report).unwrap();
        let list = json["requests"].as_array().unwrap();
        let ids: Vec<_> = list.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [&yes.id, &sent.id, &waiting.id, &no.id]);
        let states: Vec<_> = list.iter().map(|r| r["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["answered", "sent", "waiting_to_send", "answered"]);
        assert_eq!(list[0]["decision"], "agreed");
        assert_eq!(list[0]["reason"], "every Sunday at 5pm");
        assert_eq!(list[0]["answered_by"], "Jo Smith");
        assert_eq!(list[0]["text"], "I would like to phone my nan on Sundays");
        assert!(list[1]["decision"].is_null() && list[2]["answered_by"].is_null());
    }

    #[test]
    fn a_fresh_device_reports_not_enrolled_and_the_safe_default() {
        let dir = tempfile::tempdir().unwrap();
        let report = gather(&StateDir::new(dir.path().join("missing"))).unwrap();
        assert!(!report.enrolled);
        let text = render_text(&report);
        assert!(text.contains("not enrolled"), "{text}");
        assert!(text.contains("the safe default"), "{text}");
        assert!(text.contains("Camera:    not allowed"), "{text}");
        assert!(text.contains("Internet:  not allowed"), "{text}");
        assert!(text.contains("What this child is told:"), "{text}");
    }

    #[test]
    fn an_enrolled_device_shows_the_policy_and_its_explanations() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let identity = crate::identity::DeviceIdentity {
            controller_url: "https://haven.local:7443".into(),
            ca_pem: "CA".into(),
            cert_pem: "C".into(),
            key_pem: "K".into(),
            device_id: "dev-7".into(),
        };
        state
            .save_enrollment(&identity, "Sam", "2025-03-01T10:00:00Z")
            .unwrap();
        state
            .save_policy(&DevicePolicy {
                version: 3,
                issued_at_unix_ms: 1_740_000_000_000,
                child_display_name: "Sam".into(),
                camera: Some(CameraRule {
                    allowed: true,
                    reason: "agreed in your plan".into(),
                }),
                web: Some(WebRule {
                    allowed: true,
                    filter_profile: "strict".into(),
                    blocked_categories: vec!["gambling".into()],
                    ..Default::default()
                }),
                protected_contacts: vec![Contact {
                    name: "Jo".into(),
                    relationship: "social worker".into(),
                    ..Default::default()
                }],
                lockdown: Some(Lockdown {
                    active: true,
                    channels: vec!["camera".into()],
                    reason: "to keep you safe tonight".into(),
                    ..Default::default()
                }),
                explanations: vec![Explanation {
                    topic: "camera".into(),
                    text: "The camera is off tonight.".into(),
                }],
                ..Default::default()
            })
            .unwrap();
        let report = gather(&state).unwrap();
        assert!(report.enrolled);
        let text = render_text(&report);
        for expected in [
            "enrolled in Haven for Sam",
            "policy version 3",
            "Camera:    not allowed — to keep you safe tonight",
            "filtered by the \"strict\" profile; blocked: gambling",
            "Always reachable: Emergency services (police, ambulance, fire and coastguard in an \
             emergency) on 999 or 112; Childline (free, private help for anyone under 19, about \
             anything) on 0800 1111;",
            "; Jo (social worker)",
            "Apps:      all allowed",
            "Lockdown:  active for camera",
            "What Sam is told:",
            "camera: The camera is off tonight.",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(
            text.contains("Your requests: none yet"),
            "no requests yet:\n{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["requests"], serde_json::json!([]));
        assert_eq!(json["policy"]["version"], 3);
        assert_eq!(json["policy"]["camera"]["allowed"], false);
        assert_eq!(json["child_display_name"], "Sam");
    }

    // clause R7, R19: the child reads who they can contact and when, what is paused and until
    // when, and who they can always reach.
    #[test]
    fn r7_status_says_when_contacts_can_be_reached_and_who_is_always_reachable() {
        use haven_proto::agent::v1::TimeWindow;
        let policy = DevicePolicy {
            version: 9,
            issued_at_unix_ms: 1_740_000_000_000,
            contacts: vec![Contact {
                name: "Nan".into(),
                relationship: "grandmother".into(),
                windows: vec![TimeWindow {
                    start_minute: 960,
                    end_minute: 1200,
                    weekdays: vec![6, 7],
                }],
                ..Default::default()
            }],
            protected_contacts: vec![Contact {
                name: "Childline".into(),
                ..Default::default()
            }],
            lockdown: Some(Lockdown {
                active: true,
                channels: vec!["calls".into()],
                reason: "staff are worried about tonight".into(),
                until_unix_ms: 1_740_003_600_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let report = StatusReport {
            state_dir: "/var/lib/haven-agent".into(),
            enrolled: true,
            retired: false,
            device_id: Some("dev-1".into()),
            child_display_name: Some("Sam".into()),
            controller_url: None,
            enrolled_at: None,
            retired_at: None,
            retired_reason: None,
            certificate_expires: None,
            certificate_expired: Some(crate::identity::expired_message(1_740_000_000_000)),
            policy: policy_report(&policy),
            requests: Vec::new(),
            requests_problem: None,
        };
        let text = render_text(&report);
        assert!(
            text.contains("This device's certificate expired on 2025-02-19")
                && text.contains("ask staff for a new enrollment code"),
            "{text}"
        );
        for expected in [
            "Contacts:  Nan (grandmother) between 4pm and 8pm on Saturdays and Sundays (calls are \
             paused for now)",
            "Always reachable: Emergency services",
            "Childline (free, private help for anyone under 19, about anything) on 0800 1111",
            "Lockdown:  active for calls (planned until 2025-02-19 22:20 UTC) — staff are worried \
             about tonight",
            "You can still always contact Emergency services, Childline, NSPCC helpline, Ofsted, \
             Help at Hand.",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["policy"]["contacts"][0]["times"][0],
            "between 4pm and 8pm on Saturdays and Sundays"
        );
    }

    // clause WB4: a category whose list has not arrived is never shown as blocked; the web is
    // shown off until it arrives, as the filter enforces it.
    #[test]
    fn wb4_status_never_claims_a_category_whose_list_has_not_arrived() {
        use haven_proto::agent::v1::WebRule;
        let policy = DevicePolicy {
            version: 4,
            issued_at_unix_ms: 1,
            web: Some(WebRule {
                allowed: true,
                filter_profile: "filtered".into(),
                blocked_categories: vec![
                    "adult".into(),
                    "doh".into(),
                    "gambling".into(),
                    "social-networking".into(),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let all = with_lists(policy_report(&policy), &[]);
        assert!(all.web.allowed);
        assert!(all.web.waiting_for_lists.is_empty());
        let waiting = with_lists(policy_report(&policy), &["gambling".into()]);
        assert!(!waiting.web.allowed);
        assert_eq!(waiting.web.waiting_for_lists, ["gambling"]);
        assert!(
            !waiting
                .web
                .blocked_categories
                .contains(&"gambling".to_string())
        );
        assert!(
            waiting.web.reason.contains("gambling"),
            "{}",
            waiting.web.reason
        );
    }
}
