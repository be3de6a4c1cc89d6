//! Who read which child's records (subject access requests): which requests count as reading
//! a child's records, and in what words the read is listed.
//!
//! Changes are already in the audit trail with who made them; a request that changes nothing
//! but shows a child's records is a read. Lists that cover several children (a home's
//! violations, lockdowns, sanctions) record one read per child shown, because a subject access
//! request asks about one child.

use super::UnixMillis;

/// One read of one child's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub at: UnixMillis,
    pub staff_id: String,
    pub child_id: String,
    /// What was read, in plain words ("plan history").
    pub what: String,
}

/// What a gRPC method (`/package.Service/Method`) reads, or `None` when it changes records
/// (already audited) or shows nothing of a child.
pub fn what_was_read(method_path: &str) -> Option<&'static str> {
    let method = method_path.rsplit('/').next().unwrap_or_default();
    Some(match method {
        "ShowChild" => "child's record",
        "ListRiskAssessments" => "risk assessments",
        "PlanHistory" => "plan history",
        "ListReviews" => "plan reviews",
        "ListOffDutyReports" => "off-duty reports",
        "ListPhotographyApprovals" => "photography approvals",
        "ListChildRequests" => "requests and answers",
        "ListCameraIncidents" => "camera incidents",
        "ListViolations" => "violations",
        "WatchViolations" => "violations (live)",
        "ListManagerTasks" => "manager tasks",
        "ListLockdowns" => "lockdowns",
        "WatchLockdown" => "lockdown progress",
        "ListSanctions" => "sanctions",
        "ListObligations" => "obligations",
        "ListDevices" => "devices",
        "ShowDevice" => "device",
        "ListEnrollmentCodes" => "enrollment codes",
        "ListReads" => "who read the records",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_named_and_changes_are_not_reads() {
        assert_eq!(
            what_was_read("/haven.admin.v1.PlanService/PlanHistory"),
            Some("plan history")
        );
        assert_eq!(
            what_was_read("/haven.admin.v1.ViolationService/ListViolations"),
            Some("violations")
        );
        assert_eq!(
            what_was_read("/haven.admin.v1.PlanService/RevisePlan"),
            None
        );
        assert_eq!(
            what_was_read("/haven.admin.v1.EmergencyService/Lockdown"),
            None
        );
        assert_eq!(what_was_read(""), None);
    }
}
