//! The plain records Haven keeps — homes, children, devices, staff — and the checks a value
//! must pass before it is written down.

use jiff::civil::Date;

use super::UnixMillis;
use super::role::Role;

/// A value a person typed that Haven cannot accept, with the reason in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// Trims and checks a name typed by staff (a home's, a child's, a person's).
pub fn clean_name(what: &str, raw: &str) -> Result<String, Invalid> {
    let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(invalid(format!("the {what} is empty: type the {what}")));
    }
    if name.chars().count() > 100 {
        return Err(invalid(format!(
            "the {what} is longer than 100 characters: shorten it"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the {what} contains control characters: type it again"
        )));
    }
    Ok(name)
}

/// Checks a date of birth: a real date, in the past, and young enough to be in care
/// (children's homes look after children and, for care leavers, young people up to 25).
pub fn parse_date_of_birth(raw: &str, today: Date) -> Result<Date, Invalid> {
    let date: Date = raw.trim().parse().map_err(|_| {
        invalid(format!(
            "{raw:?} is not a date: write the date of birth as YYYY-MM-DD, e.g. 2012-05-17"
        ))
    })?;
    if date > today {
        return Err(invalid(format!(
            "the date of birth {date} is in the future: check the year"
        )));
    }
    let years = date
        .until((jiff::Unit::Year, today))
        .map(|span| span.get_years())
        .unwrap_or(0);
    if years > 25 {
        return Err(invalid(format!(
            "the date of birth {date} makes this person {years}: Haven is for children and young people up to 25; check the year"
        )));
    }
    Ok(date)
}

/// Children's case records are kept until the child's 75th birthday (retention guidance for
/// looked-after children's records).
pub fn retain_records_until(date_of_birth: Date) -> Date {
    date_of_birth
        .checked_add(jiff::Span::new().years(75))
        .unwrap_or(date_of_birth)
}

/// Whether a device may still connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Revoked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(DeviceStatus::Active),
            "revoked" => Some(DeviceStatus::Revoked),
            _ => None,
        }
    }
}

/// A member of staff as the controller sees them after checking their token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffIdentity {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The homes whose children this person may see and act on.
    pub homes: HomeScope,
}

/// Which homes a member of staff can see. A provider runs several homes; care staff and
/// managers belong to the homes they work in, and see nothing of the others: a child in
/// another home is, to them, a child who does not exist (no names or ids leak).
/// Administrators run Haven for the whole provider and see every home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeScope {
    Everywhere,
    Only(std::collections::BTreeSet<String>),
}

impl HomeScope {
    /// The scope for someone with `role` who belongs to `homes` (home ids).
    pub fn for_member(role: Role, homes: impl IntoIterator<Item = String>) -> Self {
        match role {
            Role::Admin => HomeScope::Everywhere,
            Role::Staff | Role::Manager => HomeScope::Only(homes.into_iter().collect()),
        }
    }

    pub fn covers(&self, home_id: &str) -> bool {
        match self {
            HomeScope::Everywhere => true,
            HomeScope::Only(homes) => homes.contains(home_id),
        }
    }
}

/// Where a device's policy stands: what the controller wants it to enforce and what the
/// device last said it enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyProgress<'a> {
    pub desired_version: u64,
    pub desired_at: UnixMillis,
    pub applied_version: u64,
    pub applied_at: Option<UnixMillis>,
    /// What the device said went wrong applying it; it then enforces its safe default.
    pub apply_error: Option<&'a str>,
}

impl PolicyProgress<'_> {
    /// "applied" once the device has acknowledged the newest policy; "pending" until then;
    /// "failed" when the device could not apply what it acknowledged.
    pub fn state(&self) -> &'static str {
        if self.apply_error.is_some_and(|e| !e.is_empty()) {
            "failed"
        } else if self.applied_version >= self.desired_version {
            "applied"
        } else {
            "pending"
        }
    }
}

/// A child is archived when they leave the home, once, and only after every device of theirs
/// was revoked, so no device keeps enforcing a plan nobody looks after any more.
pub fn may_archive(child_id: &str, archived: bool, active_devices: i64) -> Result<(), Invalid> {
    if archived {
        return Err(Invalid(format!("{child_id} is already archived")));
    }
    if active_devices > 0 {
        return Err(Invalid(format!(
            "{child_id} still has {active_devices} active device(s): revoke them first"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(
            clean_name("home name", "  Oak   House ").unwrap(),
            "Oak House"
        );
        assert!(clean_name("home name", "   ").is_err());
        assert!(clean_name("child's name", &"x".repeat(101)).is_err());
    }

    #[test]
    fn dates_of_birth_must_be_real_past_and_young() {
        let today = date(2026, 11, 28);
        assert_eq!(
            parse_date_of_birth("2012-05-17", today).unwrap(),
            date(2012, 5, 17)
        );
        let err = parse_date_of_birth("17/05/2012", today).unwrap_err();
        assert!(err.0.contains("YYYY-MM-DD"), "{err}");
        assert!(parse_date_of_birth("2027-01-01", today).is_err());
        assert!(parse_date_of_birth("2012-02-30", today).is_err());
        assert!(parse_date_of_birth("1970-01-01", today).is_err());
    }

    // clause R36 (retention)
    #[test]
    fn r36_records_are_kept_until_the_75th_birthday() {
        assert_eq!(retain_records_until(date(2012, 5, 17)), date(2087, 5, 17));
        assert_eq!(retain_records_until(date(2012, 2, 29)), date(2087, 2, 28));
    }

    #[test]
    fn staff_see_only_their_homes_and_administrators_see_all() {
        let staff = HomeScope::for_member(Role::Staff, ["home-oak".to_string()]);
        assert!(staff.covers("home-oak"));
        assert!(!staff.covers("home-elm"));
        let nowhere = HomeScope::for_member(Role::Manager, Vec::new());
        assert!(!nowhere.covers("home-oak"));
        assert!(HomeScope::for_member(Role::Admin, Vec::new()).covers("home-elm"));
    }

    #[test]
    fn policy_is_pending_until_acknowledged() {
        let mut p = PolicyProgress {
            desired_version: 4,
            desired_at: 10,
            applied_version: 3,
            applied_at: Some(5),
            apply_error: None,
        };
        assert_eq!(p.state(), "pending");
        p.applied_version = 4;
        assert_eq!(p.state(), "applied");
        p.apply_error = Some("camera could not be turned off");
        assert_eq!(
            p.state(),
            "failed",
            "a device that could not apply is never shown as applied"
        );
    }

    #[test]
    fn a_child_is_archived_once_and_only_without_active_devices() {
        assert!(may_archive("chd-1", false, 0).is_ok());
        assert!(
            may_archive("chd-1", true, 0)
                .unwrap_err()
                .0
                .contains("already archived")
        );
        assert!(
            may_archive("chd-1", false, 2)
                .unwrap_err()
                .0
                .contains("revoke them first")
        );
    }
}
