//! Two records the policy asks for outside the placement plan: a member of staff's report of
//! being contacted off duty by a child or someone known to a child (WB3), and the register of
//! approvals to take images of children (IM4).

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::records::{Invalid, clean_name};

/// What a member of staff reports after being contacted off duty (WB3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffDutyContact {
    /// When it happened, as the member of staff remembers it ("2026-11-27 21:40").
    pub when: String,
    /// How: "Facebook message", "phone call", "Snapchat friend request"…
    pub how: String,
    /// Who made contact, if known ("Amira", "Amira's cousin", "unknown account").
    pub who: String,
    pub what_happened: String,
    /// The policy says to stop the communication at once; this records that it was.
    pub communication_stopped: bool,
}

impl OffDutyContact {
    /// Checks a report before it is recorded; returns it tidied.
    pub fn checked(self) -> Result<OffDutyContact, Invalid> {
        Ok(OffDutyContact {
            when: clean_name("time it happened", &self.when)?,
            how: clean_name("way you were contacted", &self.how)?,
            who: clean_name("person who contacted you", &self.who)?,
            what_happened: required_text("account of what happened", &self.what_happened)?,
            communication_stopped: self.communication_stopped,
        })
    }
}

/// An approval to take images of a child (IM4): the Community Director approves, in
/// consultation with the placing authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotographyApproval {
    /// The Community Director (or the home's senior manager) who approved.
    pub approved_by: String,
    /// Who at the placing authority was consulted, and when.
    pub placing_authority_consulted: String,
    pub consulted_on: Date,
    /// What the images are for and who will see them.
    pub purpose: String,
    /// When the approval ends, if it does.
    pub valid_until: Option<Date>,
}

impl PhotographyApproval {
    pub fn checked(self, today: Date) -> Result<PhotographyApproval, Invalid> {
        if self.consulted_on > today {
            return Err(Invalid(format!(
                "the placing authority cannot have been consulted on {} — that is in the future",
                self.consulted_on
            )));
        }
        if let Some(until) = self.valid_until
            && until < today
        {
            return Err(Invalid(format!(
                "the approval would already have ended on {until}: give a date from today on, or none"
            )));
        }
        Ok(PhotographyApproval {
            approved_by: clean_name(
                "name of the Community Director who approved",
                &self.approved_by,
            )?,
            placing_authority_consulted: clean_name(
                "name of the person consulted at the placing authority",
                &self.placing_authority_consulted,
            )?,
            consulted_on: self.consulted_on,
            purpose: required_text("purpose of the images", &self.purpose)?,
            valid_until: self.valid_until,
        })
    }
}

fn required_text(what: &str, text: &str) -> Result<String, Invalid> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Invalid(format!("the {what} is empty: write it down")));
    }
    if t.chars().count() > 4000 {
        return Err(Invalid(format!(
            "the {what} is longer than 4,000 characters: shorten it"
        )));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    // clause WB3
    #[test]
    fn wb3_an_off_duty_report_needs_what_happened() {
        let report = OffDutyContact {
            when: "2026-11-27 21:40".into(),
            how: "Facebook message".into(),
            who: "Amira".into(),
            what_happened: "  ".into(),
            communication_stopped: true,
        };
        assert!(
            report
                .clone()
                .checked()
                .unwrap_err()
                .0
                .contains("what happened")
        );
        let ok = OffDutyContact {
            what_happened: "A friend request; I declined and blocked.".into(),
            ..report
        };
        assert!(ok.checked().is_ok());
    }

    // clause IM4
    #[test]
    fn im4_an_approval_names_the_director_and_the_placing_authority() {
        let today = date(2026, 11, 28);
        let approval = PhotographyApproval {
            approved_by: "M. Jones, Community Director".into(),
            placing_authority_consulted: "J. Okafor".into(),
            consulted_on: date(2026, 11, 20),
            purpose: "School photograph".into(),
            valid_until: Some(date(2027, 7, 31)),
        };
        assert!(approval.clone().checked(today).is_ok());
        let future = PhotographyApproval {
            consulted_on: date(2026, 12, 1),
            ..approval.clone()
        };
        assert!(future.checked(today).is_err());
        let nobody = PhotographyApproval {
            approved_by: " ".into(),
            ..approval
        };
        assert!(
            nobody
                .checked(today)
                .unwrap_err()
                .0
                .contains("Community Director")
        );
    }
}

/// How staff answer a child's request (Regulation 7: the child hears the decision and why).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestDecision {
    Agreed,
    AgreedInPart,
    NotAgreed,
}

impl RequestDecision {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "agreed" | "yes" => Ok(RequestDecision::Agreed),
            "agreed_in_part" | "partly" => Ok(RequestDecision::AgreedInPart),
            "not_agreed" | "no" => Ok(RequestDecision::NotAgreed),
            _ => Err(Invalid(format!(
                "{raw:?} is not a decision: use agreed, agreed-in-part or not-agreed"
            ))),
        }
    }

    /// The words the child's device shows.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestDecision::Agreed => "agreed",
            RequestDecision::AgreedInPart => "agreed in part",
            RequestDecision::NotAgreed => "not agreed",
        }
    }
}

/// A decision always comes with a reason the child can read.
pub fn answer_reason(reason: &str) -> Result<String, Invalid> {
    required_text("reason for the child", reason)
}

#[cfg(test)]
mod request_tests {
    use super::*;

    // clause R7
    #[test]
    fn r7_an_answer_is_a_decision_with_a_reason() {
        assert_eq!(
            RequestDecision::parse("agreed-in-part").unwrap(),
            RequestDecision::AgreedInPart
        );
        assert!(RequestDecision::parse("maybe").is_err());
        assert!(answer_reason("  ").is_err());
        assert_eq!(
            answer_reason(" Nan can call on Sundays at 5pm. ").unwrap(),
            "Nan can call on Sundays at 5pm."
        );
    }
}
