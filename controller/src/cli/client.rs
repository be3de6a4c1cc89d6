//! The staff command line's connection to the controller: the saved login and a TLS channel
//! that trusts only the controller's own certificate authority.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use haven_proto::trust::CONTROLLER_TLS_NAME;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::files::{create_private_dir, write_private};

/// What `haven login` saves (mode 0600: it holds a token).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    pub controller: String,
    pub ca_pin: String,
    pub ca_pem: String,
    pub token: String,
}

pub fn login_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HAVEN_CLI_CONFIG") {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("org", "Haven", "haven")
        .map(|d| d.config_dir().join("login.toml"))
        .unwrap_or_else(|| PathBuf::from(".haven-login.toml"))
}

pub fn save_login(login: &Login) -> anyhow::Result<PathBuf> {
    let path = login_path();
    if let Some(dir) = path.parent() {
        create_private_dir(dir).with_context(|| format!("could not create {}", dir.display()))?;
    }
    let text = toml::to_string(login).context("could not write the login")?;
    write_private(&path, text.as_bytes())
        .with_context(|| format!("could not save the login to {}", path.display()))?;
    Ok(path)
}

pub fn load_login() -> anyhow::Result<Login> {
    let path = login_path();
    let text = std::fs::read_to_string(&path).map_err(|_| {
        anyhow!("you are not logged in: run the `haven login …` line the controller printed, or ask an administrator for one")
    })?;
    let mut login: Login = toml::from_str(&text).map_err(|_| {
        anyhow!(
            "the saved login in {} is damaged: log in again with `haven login`",
            path.display()
        )
    })?;
    // A token in the environment wins, so a script can act as someone else without a login.
    if let Ok(token) = std::env::var("HAVEN_TOKEN")
        && !token.trim().is_empty()
    {
        login.token = token.trim().to_string();
    }
    Ok(login)
}

/// A TLS channel to the controller that trusts only its pinned CA.
pub async fn channel(controller: &str, ca_pem: &str) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(CONTROLLER_TLS_NAME);
    Endpoint::from_shared(controller.to_string())
        .map_err(|_| anyhow!("{controller:?} is not a controller address: use https://host:port"))?
        .tls_config(tls)
        .context("could not set up TLS")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| {
            anyhow!(
                "could not reach the controller at {controller} ({}): check that it is running and the address is right",
                root_cause(&e)
            )
        })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Adds the staff token to every request.
#[derive(Clone)]
pub struct Bearer(pub MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| anyhow!("the saved token is not valid text: log in again"))?;
        Ok(Bearer(value))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Turns a refusal from the controller into the one line a person reads. The controller's
/// words never name this program's flags; the refusal's reason and the request fields it
/// names (`service::errors`) let `haven` add its own: which flag to give, which command helps.
pub fn explain(status: Status) -> anyhow::Error {
    let msg = status.message().trim();
    let reading = crate::service::errors::read(&status);
    match status.code() {
        Code::Unavailable if msg.is_empty() || msg.contains("transport") => {
            return anyhow!(
                "the controller is not reachable: check that it is running, then try again"
            );
        }
        Code::DeadlineExceeded => {
            return anyhow!("the controller did not answer in time: try again");
        }
        Code::Unimplemented => {
            return anyhow!(
                "this controller does not know that command: it may be older than this `haven`; upgrade it"
            );
        }
        _ if msg.is_empty() => {
            return anyhow!(
                "the controller refused the request ({})",
                status.code().description()
            );
        }
        _ => {}
    }
    let mut line = msg.to_string();
    let flags: Vec<&str> = reading.fields.iter().filter_map(|f| flag_for(f)).collect();
    if !flags.is_empty() {
        line.push_str(&format!(" (give it with {})", flags.join(" or ")));
    }
    if let Some(hint) = hint_for(&reading.reason, msg) {
        line.push_str(&format!(" ({hint})"));
    }
    anyhow!("{line}")
}

/// The `haven` flag that fills a request field, where a flag does.
pub fn flag_for(field: &str) -> Option<&'static str> {
    Some(match field {
        "note" => "--note",
        "decision" => "--decision assess|refuse|no-action",
        "spoke_with_imposer" => "--spoke-with",
        "child_views" => "--views",
        "behaviour" => "--behaviour",
        "location" => "--location",
        "steps_to_avoid" => "--steps",
        "others_present" => "--present",
        "effectiveness" => "--effectiveness",
        "injury_and_treatment" => "--injury",
        "by" => "--by",
        "at" => "--at",
        "how" => "--how",
        "until" => "--until",
        "review_at" => "--review",
        "channels" => "--channels",
        "arrangements" => "--channel letters|visits",
        "advice" | "ofsted_advice" => "--ofsted-advice",
        "what_happened" => "--what",
        "device" => "--device ID",
        "home" => "--home NAME",
        "limit" | "page_size" => "--limit",
        _ => return None,
    })
}

/// What to do next for a reason, in this program's commands.
fn hint_for(reason: &str, msg: &str) -> Option<&'static str> {
    use crate::service::errors as r;
    match reason {
        r::TOKEN_EXPIRED => Some(
            "an administrator gives a new one with `haven staff rotate NAME`; rotate yours before it expires with `haven login --rotate`",
        ),
        r::TOKEN_INVALID if msg.starts_with("no staff token") => {
            Some("run the `haven login …` line you were given")
        }
        r::PERMISSION_NEEDS_RISK_ASSESSMENT => {
            Some("`haven risk template` gives the form; `haven risk record` records it")
        }
        r::PROTECTED_CONTACT_BUILT_IN => Some("`haven protected-contact list` shows the list"),
        r::CHILD_HAS_ACTIVE_DEVICES => Some("`haven device list --child CHILD` lists them"),
        r::PAGE_TOKEN_INVALID => Some(
            "give --page-token exactly as `haven` printed it, with the same filters, or leave it out to start from the first page",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::errors;

    #[test]
    fn a_missing_field_is_named_by_its_flag() {
        let e = explain(errors::bad_field("note", "say why the lockdown is lifted"));
        assert_eq!(
            e.to_string(),
            "say why the lockdown is lifted (give it with --note)"
        );
    }

    #[test]
    fn a_reason_adds_this_programs_next_step() {
        let status = errors::refusal(
            Code::FailedPrecondition,
            crate::domain::risk::Refusal::new("KP2", "calls with Mum have no risk assessment")
                .because(errors::PERMISSION_NEEDS_RISK_ASSESSMENT),
        );
        let e = explain(status).to_string();
        assert!(
            e.starts_with("calls with Mum have no risk assessment ("),
            "{e}"
        );
        assert!(e.contains("haven risk record"), "{e}");
    }

    #[test]
    fn plain_words_stay_as_they_are() {
        assert_eq!(
            explain(Status::failed_precondition("nothing to do")).to_string(),
            "nothing to do"
        );
    }
}
