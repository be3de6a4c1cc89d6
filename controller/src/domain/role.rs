//! Staff roles and what each may do.
//!
//! The roles are not a ladder: an administrator runs the system (staff, homes, devices) but
//! does not decide a child's arrangements, which is a Registered Manager's job.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Care staff: read records, record risk assessments, take emergency action.
    Staff,
    /// Registered Manager or Director: decides and changes a child's arrangements.
    Manager,
    /// Runs Haven itself: staff accounts, homes, children's records, devices.
    Admin,
}

/// Something a staff member may ask Haven to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    ReadRecords,
    ManageStaff,
    ManageHomes,
    ManageChildren,
    ManageDevices,
    EditProtectedContacts,
    VerifyAudit,
    RecordRiskAssessments,
    ReportOffDutyContact,
    FollowUpReports,
    RegisterPhotographyApprovals,
    AnswerChildRequests,
    RecordIncidents,
    CloseManagerTasks,
    /// Withdraw or restore communication in an emergency (RM3): any member of staff.
    EmergencyAction,
    /// Complete a sanction record, record the talk with the child, record a notification.
    RecordSanctions,
    /// Sign a sanction record as accurate: the Registered Manager.
    SignOffSanctions,
    /// See who read a child's records (subject access requests).
    ListReads,
    /// Import a web filter category list: it affects every home (WB4).
    ImportFilterLists,
    /// Allow or deny a site for one home's devices, over the category lists (WB4).
    EditWebExceptions,
}

impl Action {
    /// How the action reads in a refusal: "only … can <this>".
    pub fn describe(self) -> &'static str {
        match self {
            Action::ReadRecords => "read records",
            Action::ManageStaff => "add or remove staff",
            Action::ManageHomes => "add homes",
            Action::ManageChildren => "add children",
            Action::ManageDevices => "enroll or remove devices",
            Action::EditProtectedContacts => "change a home's protected contacts",
            Action::VerifyAudit => "check the audit trail",
            Action::RecordRiskAssessments => "record risk assessments",
            Action::ReportOffDutyContact => "report off-duty contact",
            Action::FollowUpReports => "acknowledge staff reports",
            Action::RegisterPhotographyApprovals => "register photography approvals",
            Action::AnswerChildRequests => "answer a child's request",
            Action::RecordIncidents => "record an incident",
            Action::CloseManagerTasks => "close a manager task",
            Action::EmergencyAction => "take emergency action",
            Action::RecordSanctions => "record sanctions and notifications",
            Action::SignOffSanctions => "sign off a sanction record",
            Action::ListReads => "see who read a child's records",
            Action::ImportFilterLists => "import web filter lists",
            Action::EditWebExceptions => "change a home's web filter exceptions",
        }
    }

    /// The roles allowed to take this action.
    pub fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::ReadRecords => &[Staff, Manager, Admin],
            Action::ManageStaff | Action::ManageHomes | Action::ImportFilterLists => &[Admin],
            Action::ManageChildren | Action::ManageDevices => &[Manager, Admin],
            Action::EditProtectedContacts | Action::EditWebExceptions => &[Manager],
            Action::VerifyAudit | Action::ListReads => &[Manager, Admin],
            Action::RecordRiskAssessments | Action::RecordIncidents => &[Staff, Manager],
            Action::ReportOffDutyContact => &[Staff, Manager, Admin],
            Action::EmergencyAction | Action::RecordSanctions => &[Staff, Manager],
            Action::FollowUpReports
            | Action::RegisterPhotographyApprovals
            | Action::AnswerChildRequests
            | Action::CloseManagerTasks
            | Action::SignOffSanctions => &[Manager],
        }
    }
}

impl Role {
    pub fn may(self, action: Action) -> bool {
        action.allowed_roles().contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Staff => "staff",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a role: use staff, manager or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "staff" => Ok(Role::Staff),
            "manager" => Ok(Role::Manager),
            "admin" | "administrator" => Ok(Role::Admin),
            _ => Err(UnknownRole(s.to_string())),
        }
    }
}

/// The refusal a person sees when their role may not do something.
pub fn refusal(role: Role, action: Action) -> String {
    let allowed: Vec<&str> = action
        .allowed_roles()
        .iter()
        .map(|r| r.with_article())
        .collect();
    format!(
        "only {} can {}; you are signed in as {}",
        allowed.join(" or "),
        action.describe(),
        role.with_article()
    )
}

impl Role {
    /// "a member of staff", "a manager", "an administrator": how refusals name a role.
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Staff => "a member of staff",
            Role::Manager => "a manager",
            Role::Admin => "an administrator",
        }
    }
}

/// Whether a member of staff with `role` may be revoked while `active_admins` administrators
/// (them included) can still log in: never the last administrator, or nobody could manage
/// staff again.
pub fn may_revoke(role: Role, active_admins: u64) -> Result<(), &'static str> {
    if role == Role::Admin && active_admins <= 1 {
        return Err(
            "this is the last administrator: add another administrator before revoking this one",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_administrator_cannot_be_revoked() {
        assert!(may_revoke(Role::Admin, 1).is_err());
        assert!(may_revoke(Role::Admin, 2).is_ok());
        assert!(may_revoke(Role::Staff, 1).is_ok());
    }

    #[test]
    fn staff_can_read_but_not_administer() {
        assert!(Role::Staff.may(Action::ReadRecords));
        assert!(!Role::Staff.may(Action::ManageStaff));
        assert!(!Role::Staff.may(Action::ManageDevices));
    }

    #[test]
    fn admin_runs_the_system_but_does_not_change_arrangements() {
        assert!(Role::Admin.may(Action::ManageStaff));
        assert!(!Role::Admin.may(Action::EditProtectedContacts));
        assert!(Role::Manager.may(Action::EditProtectedContacts));
        assert!(!Role::Manager.may(Action::ManageStaff));
    }

    // clauses RM3, GD4: any member of staff may act in an emergency; only the Registered
    // Manager signs the sanction record off (RM5).
    #[test]
    fn rm3_gd4_any_staff_may_lock_down_but_only_a_manager_signs_off() {
        assert!(Role::Staff.may(Action::EmergencyAction));
        assert!(Role::Manager.may(Action::EmergencyAction));
        assert!(Role::Staff.may(Action::RecordSanctions));
        assert!(!Role::Staff.may(Action::SignOffSanctions));
        assert!(Role::Manager.may(Action::SignOffSanctions));
    }

    #[test]
    fn refusals_say_who_may() {
        assert_eq!(
            refusal(Role::Staff, Action::ManageStaff),
            "only an administrator can add or remove staff; you are signed in as a member of staff"
        );
        assert!(
            refusal(Role::Staff, Action::ManageDevices).contains("a manager or an administrator")
        );
    }

    #[test]
    fn roles_parse_from_words() {
        assert_eq!("Manager".parse::<Role>().unwrap(), Role::Manager);
        assert!("boss".parse::<Role>().is_err());
    }
}
