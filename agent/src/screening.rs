//! The contact screening service: a Unix socket a dialer or messaging integration asks
//! "may this device call / text / message this address now?" before connecting — and, on a
//! Linux phone, asks to place, answer and relay calls and texts the child's account may not
//! make itself (see [`crate::linux::telephony`]).
//!
//! Protocol: one JSON line in, one JSON line out, then the connection closes.
//!
//! ```text
//! → {"channel":"call","address":"+447700900123"}
//! ← {"decision":"allow","reason":"Nan is one of your contacts, so you can call them now."}
//! ← {"decision":"deny","reason":"You can call Nan between 4pm and 8pm."}
//! ← {"decision":"deny","error":"…what was wrong with the question…"}
//! → {"op":"call","to":"+447700900123"}            ← allow, with "call": the call's id
//! → {"op":"answer","call":"/org/…/Call/3"}        ← allow when the caller is allowed
//! → {"op":"text","to":"+447700900123","body":"…"} ← allow once the text is handed to the modem
//! → {"op":"inbox"}                                 ← allow, with "inbox": the texts received
//! ```
//!
//! `channel` is `call`, `sms` or `messaging`. Anything else, or a line over
//! [`MAX_LINE`] bytes, gets an `error` answer (and counts as "deny"); the service never
//! crashes on what it is sent. The decision is [`crate::contacts::may_contact`]'s, against
//! the policy the [`ContactScreening`] enforcer was last given.
//!
//! Who asked matters (GD3): refused and unknown addresses are reported to the
//! [`BlockedSink`] only when a *trusted* account asked (root, the agent itself, or an account
//! given with `--screening-trusted-uid`, such as the phone's dialer), the same attempt at most
//! once a minute. Anyone else gets the same answer and nothing is written, so no local
//! process can put "tried to call X" into a child's record. See [`socket`] for the limits on
//! each client.
//!
//! A text's body passes straight to the modem and the inbox's words straight to the client:
//! neither is stored or logged.

#[cfg(test)]
mod fuzz;
mod limits;
mod socket;

pub use socket::{
    AskError, ContactScreening, DEADLINE, ScreeningError, ScreeningOptions, ask, ask_line, bind,
    peer_uid,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use haven_proto::agent::v1::{Channel, DevicePolicy};
use serde::{Deserialize, Serialize};

use crate::contacts::{ContactDecision, LocalTime, may_contact};
use crate::report::{Blocked, BlockedSink};

/// Where the socket is, unless `--screening-socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/haven-agent/screening.sock";
/// The longest line accepted, in bytes (an address is a few dozen; a text a few hundred).
pub const MAX_LINE: usize = 4096;
/// The longest text relayed, in characters (ten SMS parts).
pub const MAX_TEXT: usize = 1530;
/// The same attempt (channel, address, outcome) is reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The question, as sent on the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub channel: String,
    pub address: String,
}

/// An operation on the child's behalf (a line with an `op`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request {
    /// The same as a [`Question`].
    Ask { channel: String, address: String },
    /// Place a call.
    Call { to: String },
    /// Answer a ringing call.
    Answer { call: String },
    /// Send a text.
    Text { to: String, body: String },
    /// Read the texts received.
    Inbox,
}

/// A received text, as the child's inbox shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxText {
    pub id: String,
    pub from: String,
    pub text: String,
    /// When the text was sent, as the network gave it.
    #[serde(default)]
    pub at: String,
}

/// The answer, as sent on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// "allow" or "deny".
    pub decision: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Set when the question could not be understood or carried out; the decision is then
    /// "deny".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The call placed or answered, for `call` and `answer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub call: String,
    /// The texts received, for `inbox`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbox: Vec<InboxText>,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        self.decision == "allow"
    }

    pub(crate) fn refused(error: impl Into<String>) -> Self {
        Self {
            decision: "deny".into(),
            reason: String::new(),
            error: error.into(),
            call: String::new(),
            inbox: Vec::new(),
        }
    }

    fn from_decision(decision: &ContactDecision) -> Self {
        Self {
            decision: if decision.is_allowed() {
                "allow"
            } else {
                "deny"
            }
            .into(),
            reason: decision.reason().to_string(),
            error: String::new(),
            call: String::new(),
            inbox: Vec::new(),
        }
    }
}

/// Why the agent could not place, answer or relay a call or text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelephoneError {
    #[error("this device has no modem Haven can use right now")]
    NoModem,
    #[error("there is no such call")]
    NoSuchCall,
    #[error("that call is not ringing for you to answer")]
    NotRinging,
    #[error("the modem could not do it: {0}")]
    Modem(String),
}

/// Calls and texts the agent makes for the child: a platform's modem (on Linux,
/// [`crate::linux::telephony::Phone`]). It only carries out; whether is decided here.
pub trait Telephone: Send + Sync {
    /// Places a call and returns its id.
    fn place_call(&self, number: &str) -> Result<String, TelephoneError>;
    /// The number of a call ringing in.
    fn caller(&self, call: &str) -> Result<String, TelephoneError>;
    fn answer(&self, call: &str) -> Result<(), TelephoneError>;
    fn send_text(&self, number: &str, body: &str) -> Result<(), TelephoneError>;
    /// Every text received and still on the modem.
    fn inbox(&self) -> Result<Vec<InboxText>, TelephoneError>;
}

/// `call`, `sms`, `messaging` (and a few natural spellings) → the wire channel.
pub fn parse_channel(text: &str) -> Option<Channel> {
    match text.trim().to_ascii_lowercase().as_str() {
        "call" | "calls" | "phone" => Some(Channel::Call),
        "sms" | "text" | "texts" => Some(Channel::Sms),
        "messaging" | "message" | "messages" => Some(Channel::Messaging),
        _ => None,
    }
}

fn channel_word(channel: Channel) -> &'static str {
    match channel {
        Channel::Call => "call",
        Channel::Sms => "text",
        Channel::Messaging => "message",
        Channel::Unspecified => "contact",
    }
}

/// Who was reaching whom, and what was done about it, for the words staff read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A dialer asked before connecting.
    Asked,
    /// The device reached out, and this was done (e.g. "the call was hung up").
    Outgoing(&'static str),
    /// Someone reached the device, and this was done.
    Incoming(&'static str),
}

/// Remembers recent reports, so the same attempt is reported once a minute at most.
#[derive(Default)]
struct RecentReports(HashMap<(i32, String, bool, bool), Instant>);

impl RecentReports {
    fn should_report(&mut self, key: (i32, String, bool, bool), now: Instant) -> bool {
        self.0
            .retain(|_, at| now.duration_since(*at) < REPORT_EVERY);
        if self.0.contains_key(&key) {
            return false;
        }
        // Bounded even under a flood of different addresses.
        if self.0.len() >= 10_000 {
            self.0.clear();
        }
        self.0.insert(key, now);
        true
    }
}

/// The decision side of the service, shared by the socket's threads and the telephony guard.
pub struct Screener {
    policy: RwLock<DevicePolicy>,
    sink: Arc<dyn BlockedSink>,
    recent: Mutex<RecentReports>,
    telephone: RwLock<Option<Arc<dyn Telephone>>>,
}

impl Screener {
    pub fn new(policy: DevicePolicy, sink: Arc<dyn BlockedSink>) -> Self {
        Self {
            policy: RwLock::new(policy),
            sink,
            recent: Mutex::new(RecentReports::default()),
            telephone: RwLock::new(None),
        }
    }

    pub fn set_policy(&self, policy: &DevicePolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy.clone();
    }

    /// Lets the socket place, answer and relay calls and texts through `telephone`.
    pub fn set_telephone(&self, telephone: Arc<dyn Telephone>) {
        *self.telephone.write().unwrap_or_else(|p| p.into_inner()) = Some(telephone);
    }

    fn telephone(&self) -> Option<Arc<dyn Telephone>> {
        self.telephone
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The decision alone: [`may_contact`] against the policy in force. Reports nothing.
    pub fn judge(&self, channel: Channel, address: &str, at: LocalTime) -> ContactDecision {
        let policy = self.policy.read().unwrap_or_else(|p| p.into_inner());
        may_contact(&policy, channel, address, at)
    }

    /// Decides, reports a refusal (a dialer asked), and answers.
    pub fn decide(&self, channel: Channel, address: &str, at: LocalTime) -> ContactDecision {
        let decision = self.judge(channel, address, at);
        self.report(Attempt::Asked, channel, address, &decision);
        decision
    }

    /// Reports a refused attempt to the sink (the same one at most once a minute); allowed
    /// attempts, and so every protected contact, are never reported.
    pub fn report(
        &self,
        attempt: Attempt,
        channel: Channel,
        address: &str,
        decision: &ContactDecision,
    ) {
        let Some(kind) = decision.violation_kind() else {
            return;
        };
        // Reported in one form (E.164 for phone numbers), so staff see one number however
        // it was dialled, and a manager can compare it with the plan's contacts.
        let subject = match crate::contacts::normalise_address(address) {
            s if s.is_empty() => "a withheld number".to_string(),
            s => s,
        };
        let unknown = matches!(decision, ContactDecision::Unknown { .. });
        let incoming = matches!(attempt, Attempt::Incoming(_));
        let key = (channel as i32, subject.clone(), unknown, incoming);
        let report = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .should_report(key, Instant::now());
        if report {
            self.sink.blocked(
                Blocked::now(kind, subject, report_words(attempt, channel, decision))
                    .on_channel(channel),
            );
        }
    }

    /// Answers one line (without its newline). `trusted` says whether a refusal may be
    /// recorded: see the module documentation.
    /// Whether a line asks about (or to call or text) a built-in protected contact: such a
    /// question is answered whatever the asking account's rate limit says (R19), so no
    /// flood — by a child or a misbehaving app — can make a dialer hear "no" for 999.
    pub fn is_about_protected(line: &str) -> bool {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            return false;
        };
        ["address", "to"]
            .iter()
            .filter_map(|k| value.get(k).and_then(serde_json::Value::as_str))
            .any(|a| haven_protected::builtin_for_number(a).is_some())
    }

    pub fn answer_line(&self, line: &str, at: LocalTime, trusted: bool) -> Answer {
        let value: serde_json::Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(_) => return not_understood(),
        };
        if value.get("op").is_none() {
            return match serde_json::from_value::<Question>(value) {
                Ok(q) => self.ask(&q.channel, &q.address, at, trusted),
                Err(_) => not_understood(),
            };
        }
        let request = match serde_json::from_value::<Request>(value) {
            Ok(r) => r,
            Err(e) => {
                return Answer::refused(format!(
                    "that request is not understood ({e}): use an op of \"ask\", \"call\", \
                     \"answer\", \"text\" or \"inbox\""
                ));
            }
        };
        match request {
            Request::Ask { channel, address } => self.ask(&channel, &address, at, trusted),
            Request::Call { to } => self.place_call(&to, at, trusted),
            Request::Answer { call } => self.answer_call(&call, at),
            Request::Text { to, body } => self.send_text(&to, &body, at, trusted),
            Request::Inbox => self.inbox(at),
        }
    }

    fn decide_as(
        &self,
        channel: Channel,
        address: &str,
        at: LocalTime,
        trusted: bool,
    ) -> ContactDecision {
        if trusted {
            self.decide(channel, address, at)
        } else {
            self.judge(channel, address, at)
        }
    }

    fn ask(&self, channel: &str, address: &str, at: LocalTime, trusted: bool) -> Answer {
        let Some(channel) = parse_channel(channel) else {
            return Answer::refused(format!(
                "{channel:?} is not a channel: use \"call\", \"sms\" or \"messaging\""
            ));
        };
        let address = match checked_address(address) {
            Ok(a) => a,
            Err(refusal) => return refusal,
        };
        Answer::from_decision(&self.decide_as(channel, address, at, trusted))
    }

    fn place_call(&self, to: &str, at: LocalTime, trusted: bool) -> Answer {
        let to = match checked_address(to) {
            Ok(a) => a,
            Err(refusal) => return refusal,
        };
        let decision = self.decide_as(Channel::Call, to, at, trusted);
        if !decision.is_allowed() {
            return Answer::from_decision(&decision);
        }
        match self.with_telephone(|t| t.place_call(to)) {
            Ok(call) => Answer {
                call,
                ..Answer::from_decision(&decision)
            },
            Err(refusal) => refusal,
        }
    }

    /// The caller was decided when the call rang in (the telephony guard hangs up and reports
    /// a refused one); this decides again, without reporting, in case the plan changed.
    fn answer_call(&self, call: &str, at: LocalTime) -> Answer {
        let caller = match self.with_telephone(|t| t.caller(call)) {
            Ok(number) => number,
            Err(refusal) => return refusal,
        };
        let decision = self.judge(Channel::Call, &caller, at);
        if !decision.is_allowed() {
            return Answer::from_decision(&decision);
        }
        match self.with_telephone(|t| t.answer(call)) {
            Ok(()) => Answer {
                call: call.to_string(),
                ..Answer::from_decision(&decision)
            },
            Err(refusal) => refusal,
        }
    }

    fn send_text(&self, to: &str, body: &str, at: LocalTime, trusted: bool) -> Answer {
        let to = match checked_address(to) {
            Ok(a) => a,
            Err(refusal) => return refusal,
        };
        if body.is_empty() || body.chars().count() > MAX_TEXT {
            return Answer::refused(format!("a text must be 1 to {MAX_TEXT} characters"));
        }
        let decision = self.decide_as(Channel::Sms, to, at, trusted);
        if !decision.is_allowed() {
            return Answer::from_decision(&decision);
        }
        match self.with_telephone(|t| t.send_text(to, body)) {
            Ok(()) => Answer::from_decision(&decision),
            Err(refusal) => refusal,
        }
    }

    /// The texts received from people the plan allows now. The telephony guard deletes a
    /// refused text when it arrives; this filter also covers texts that arrived while the
    /// agent was not running, or before a plan changed.
    fn inbox(&self, at: LocalTime) -> Answer {
        match self.with_telephone(|t| t.inbox()) {
            Ok(texts) => Answer {
                decision: "allow".into(),
                reason: String::new(),
                error: String::new(),
                call: String::new(),
                inbox: texts
                    .into_iter()
                    .filter(|t| self.judge(Channel::Sms, &t.from, at).is_allowed())
                    .collect(),
            },
            Err(refusal) => refusal,
        }
    }

    fn with_telephone<T>(
        &self,
        op: impl FnOnce(&dyn Telephone) -> Result<T, TelephoneError>,
    ) -> Result<T, Answer> {
        let telephone = self
            .telephone()
            .ok_or_else(|| Answer::refused(TelephoneError::NoModem.to_string()))?;
        op(telephone.as_ref()).map_err(|e| Answer::refused(e.to_string()))
    }
}

fn not_understood() -> Answer {
    Answer::refused(
        "that is not a question this service understands: send one line of JSON like \
         {\"channel\":\"call\",\"address\":\"+447700900123\"}",
    )
}

fn checked_address(address: &str) -> Result<&str, Answer> {
    let address = address.trim();
    if address.is_empty() || address.chars().count() > 256 {
        return Err(Answer::refused("the address must be 1 to 256 characters"));
    }
    Ok(address)
}

/// What staff read about a refused attempt: who, which way, and what was done.
fn report_words(attempt: Attempt, channel: Channel, decision: &ContactDecision) -> String {
    let verb = channel_word(channel);
    let unknown = matches!(decision, ContactDecision::Unknown { .. });
    match (attempt, unknown) {
        (Attempt::Asked, true) => {
            format!("tried to {verb} an address that is on no list (a manager should look at it)")
        }
        (Attempt::Asked, false) => format!(
            "tried to {verb} a contact when it is not allowed: {}",
            decision.reason()
        ),
        (Attempt::Outgoing(done), true) => format!(
            "tried to {verb} an address that is on no list; {done} (a manager should look at it)"
        ),
        (Attempt::Outgoing(done), false) => format!(
            "tried to {verb} a contact when it is not allowed; {done}: {}",
            decision.reason()
        ),
        (Attempt::Incoming(done), true) => format!(
            "an address on no list tried to {verb} this device; {done} (a manager should look \
             at it)"
        ),
        (Attempt::Incoming(done), false) => format!(
            "a contact tried to {verb} this device when it is not allowed; {done}: {}",
            decision.reason()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::MemorySink;
    use haven_proto::agent::v1::{Contact, ContactAddress, Lockdown, ViolationKind};
    use std::collections::HashMap;

    fn policy() -> DevicePolicy {
        let address = |channel: Channel, a: &str| ContactAddress {
            channel: channel as i32,
            address: a.into(),
            app: String::new(),
        };
        DevicePolicy {
            version: 4,
            contacts: vec![Contact {
                name: "Nan".into(),
                addresses: vec![address(Channel::Call, "+447700900123")],
                ..Default::default()
            }],
            protected_contacts: vec![Contact {
                name: "Childline".into(),
                addresses: vec![address(Channel::Call, "08001111")],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    const NOON: LocalTime = LocalTime {
        weekday: 2,
        minute: 720,
    };

    fn screener() -> (Screener, Arc<MemorySink>) {
        let sink = Arc::new(MemorySink::default());
        (Screener::new(policy(), sink.clone()), sink)
    }

    #[test]
    fn d3_questions_get_allow_or_deny_with_a_reason() {
        let (s, sink) = screener();
        let a = s.answer_line(r#"{"channel":"call","address":"07700 900123"}"#, NOON, true);
        assert!(a.allowed() && a.reason.contains("Nan"), "{a:?}");
        let a = s.answer_line(r#"{"channel":"call","address":"0800 1111"}"#, NOON, true);
        assert!(a.allowed(), "{a:?}");
        assert!(sink.take().is_empty(), "allowed attempts are not reported");
        let a = s.answer_line(r#"{"channel":"sms","address":"+447700900999"}"#, NOON, true);
        assert!(!a.allowed() && a.error.is_empty(), "{a:?}");
        let reported = sink.take();
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].kind, ViolationKind::UnknownContact);
        assert_eq!(reported[0].channel, Channel::Sms);
        assert_eq!(reported[0].subject, "+447700900999");
    }

    #[test]
    fn gd3_r19_lockdown_refusals_are_reported_and_protected_contacts_still_pass() {
        let (s, sink) = screener();
        let mut p = policy();
        p.lockdown = Some(Lockdown {
            active: true,
            channels: vec!["calls".into()],
            ..Default::default()
        });
        s.set_policy(&p);
        assert!(!s.decide(Channel::Call, "07700900123", NOON).is_allowed());
        assert!(s.decide(Channel::Call, "08001111", NOON).is_allowed());
        let reported = sink.take();
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].kind, ViolationKind::ContactBlocked);
    }

    #[test]
    fn d3_the_same_attempt_is_reported_once_a_minute() {
        let (s, sink) = screener();
        for _ in 0..5 {
            s.decide(Channel::Call, "07700900999", NOON);
        }
        s.decide(Channel::Sms, "07700900999", NOON);
        assert_eq!(sink.take().len(), 2);
        // However the number is written.
        s.decide(Channel::Sms, "+44 7700 900999", NOON);
        assert!(sink.take().is_empty());
    }

    #[test]
    fn garbage_gets_a_clear_error_never_a_crash() {
        let (s, sink) = screener();
        for line in [
            "",
            "hello",
            "{}",
            r#"{"channel":"fax","address":"1"}"#,
            r#"{"channel":"call","address":""}"#,
            r#"{"channel":"call","address":"1","extra":true}"#,
            "[1,2,3]",
            r#"{"op":"fly","to":"1"}"#,
            r#"{"op":"call"}"#,
        ] {
            let a = s.answer_line(line, NOON, true);
            assert_eq!(a.decision, "deny", "{line}");
            assert!(!a.error.is_empty(), "{line}: {a:?}");
        }
        assert!(sink.take().is_empty());
    }

    #[test]
    fn gd3_an_untrusted_account_gets_the_answer_and_nothing_is_recorded() {
        let (s, sink) = screener();
        for line in [
            r#"{"channel":"call","address":"+447700900999"}"#,
            r#"{"op":"ask","channel":"sms","address":"+447700900998"}"#,
            r#"{"op":"call","to":"+447700900997"}"#,
            r#"{"op":"text","to":"+447700900996","body":"hi"}"#,
        ] {
            let a = s.answer_line(line, NOON, false);
            assert!(
                !a.allowed() && a.error.is_empty() && !a.reason.is_empty(),
                "{a:?}"
            );
        }
        assert!(
            sink.take().is_empty(),
            "nothing written for an untrusted asker"
        );
        // The same question from a trusted account is recorded.
        s.answer_line(
            r#"{"channel":"call","address":"+447700900999"}"#,
            NOON,
            true,
        );
        assert_eq!(sink.take().len(), 1);
    }

    /// A modem in memory: records what it was asked to do.
    #[derive(Default)]
    struct FakePhone {
        placed: Mutex<Vec<String>>,
        answered: Mutex<Vec<String>>,
        sent: Mutex<Vec<(String, String)>>,
        ringing: Mutex<HashMap<String, String>>,
        inbox: Mutex<Vec<InboxText>>,
    }

    impl Telephone for FakePhone {
        fn place_call(&self, number: &str) -> Result<String, TelephoneError> {
            self.placed.lock().unwrap().push(number.into());
            Ok("/call/1".into())
        }
        fn caller(&self, call: &str) -> Result<String, TelephoneError> {
            self.ringing
                .lock()
                .unwrap()
                .get(call)
                .cloned()
                .ok_or(TelephoneError::NoSuchCall)
        }
        fn answer(&self, call: &str) -> Result<(), TelephoneError> {
            self.answered.lock().unwrap().push(call.into());
            Ok(())
        }
        fn send_text(&self, number: &str, body: &str) -> Result<(), TelephoneError> {
            self.sent.lock().unwrap().push((number.into(), body.into()));
            Ok(())
        }
        fn inbox(&self) -> Result<Vec<InboxText>, TelephoneError> {
            Ok(self.inbox.lock().unwrap().clone())
        }
    }

    #[test]
    fn d3_the_agent_places_answers_and_relays_only_what_the_plan_allows() {
        let (s, sink) = screener();
        let mut p = policy();
        p.contacts[0].addresses.push(ContactAddress {
            channel: Channel::Sms as i32,
            address: "+447700900123".into(),
            app: String::new(),
        });
        s.set_policy(&p);
        let a = s.answer_line(r#"{"op":"call","to":"07700900123"}"#, NOON, true);
        assert!(a.error.contains("no modem"), "{a:?}");
        let phone = Arc::new(FakePhone::default());
        s.set_telephone(phone.clone());
        let a = s.answer_line(r#"{"op":"call","to":"07700900123"}"#, NOON, true);
        assert!(a.allowed() && a.call == "/call/1", "{a:?}");
        let a = s.answer_line(r#"{"op":"call","to":"07700900999"}"#, NOON, true);
        assert!(
            !a.allowed() && a.reason.contains("not one of your contacts"),
            "{a:?}"
        );
        assert_eq!(
            *phone.placed.lock().unwrap(),
            vec!["07700900123".to_string()]
        );

        phone
            .ringing
            .lock()
            .unwrap()
            .insert("/call/2".into(), "+447700900123".into());
        phone
            .ringing
            .lock()
            .unwrap()
            .insert("/call/3".into(), "+447700900999".into());
        assert!(
            s.answer_line(r#"{"op":"answer","call":"/call/2"}"#, NOON, true)
                .allowed()
        );
        assert!(
            !s.answer_line(r#"{"op":"answer","call":"/call/3"}"#, NOON, true)
                .allowed()
        );
        assert_eq!(*phone.answered.lock().unwrap(), vec!["/call/2".to_string()]);

        let a = s.answer_line(
            r#"{"op":"text","to":"+447700900123","body":"see you at 5"}"#,
            NOON,
            true,
        );
        assert!(a.allowed(), "{a:?}");
        let a = s.answer_line(
            r#"{"op":"text","to":"+447700900999","body":"secret"}"#,
            NOON,
            true,
        );
        assert!(!a.allowed(), "{a:?}");
        assert_eq!(phone.sent.lock().unwrap().len(), 1);
        // The refused text is reported with its number, never its words.
        let reported = sink.take();
        assert!(
            reported.iter().all(|r| !r.detail.contains("secret")),
            "{reported:?}"
        );
        assert!(
            reported
                .iter()
                .any(|r| r.channel == Channel::Sms && r.subject == "+447700900999")
        );

        *phone.inbox.lock().unwrap() = vec![
            InboxText {
                id: "1".into(),
                from: "+447700900123".into(),
                text: "hello".into(),
                at: String::new(),
            },
            InboxText {
                id: "2".into(),
                from: "+447700900999".into(),
                text: "stranger".into(),
                at: String::new(),
            },
        ];
        let a = s.answer_line(r#"{"op":"inbox"}"#, NOON, false);
        assert_eq!(a.inbox.len(), 1, "{a:?}");
        assert_eq!(a.inbox[0].text, "hello");
    }

    #[test]
    fn gd3_incoming_refusals_say_what_was_done_and_are_reported_once() {
        let (s, sink) = screener();
        for _ in 0..3 {
            let d = s.judge(Channel::Call, "+447700900999", NOON);
            s.report(
                Attempt::Incoming("the call was hung up"),
                Channel::Call,
                "+447700900999",
                &d,
            );
        }
        let d = s.judge(Channel::Call, "08001111", NOON);
        s.report(
            Attempt::Incoming("the call was hung up"),
            Channel::Call,
            "08001111",
            &d,
        );
        let reported = sink.take();
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert!(
            reported[0].detail.contains("tried to call this device"),
            "{reported:?}"
        );
        assert!(reported[0].detail.contains("hung up"), "{reported:?}");
    }
}
