//! The child's voice on the record (Regulation 7, R7): a revision that changes a child's
//! arrangements records what the child said about it, or why their views could not be sought
//! (their age, their capacity, or urgency). Blank is refused.
//!
//! Pure rules over plan sections.

use super::plan::{CommunicationSection, diff};
use super::risk::Refusal;

/// Checks that a revision changing anything in `next` (compared with `previous`, or with the
/// safe default for a first plan) carries the child's views or why they were not sought.
pub fn check_child_voice(
    previous: Option<&CommunicationSection>,
    next: &CommunicationSection,
    child_views: Option<&str>,
    views_not_sought: Option<&str>,
) -> Result<(), Refusal> {
    let said = |t: Option<&str>| t.is_some_and(|t| !t.trim().is_empty());
    if said(child_views) || said(views_not_sought) {
        if views_not_sought.is_some_and(|t| t.chars().count() > 2000) {
            return Err(Refusal::new(
                "R7",
                "why the child's views were not sought is longer than 2000 characters: shorten it",
            ));
        }
        return Ok(());
    }
    if diff(previous, next).is_empty() {
        return Ok(());
    }
    Err(Refusal::new(
        "R7",
        "this revision changes the child's arrangements: write what the child said about it (child_views = \"…\"), or why their views could not be sought — their age, their capacity, or urgency (views_not_sought = \"…\")",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r7_a_change_records_the_childs_views_or_why_not() {
        let before = CommunicationSection::default();
        let mut after = before.clone();
        after.apps.blocked = vec!["com.example.game".into()];
        let err = check_child_voice(Some(&before), &after, None, None).unwrap_err();
        assert_eq!(err.clause, "R7");
        assert!(err.message.contains("views_not_sought"), "{err}");
        assert!(check_child_voice(Some(&before), &after, Some("  "), Some("")).is_err());
        assert!(check_child_voice(Some(&before), &after, Some("I don't mind"), None).is_ok());
        assert!(
            check_child_voice(
                Some(&before),
                &after,
                None,
                Some("urgency: withdrawn at once; to be asked at the review")
            )
            .is_ok()
        );
        // Nothing changed (a new review date only): nothing to ask about.
        assert!(check_child_voice(Some(&before), &before, None, None).is_ok());
    }
}
