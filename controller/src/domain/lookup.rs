//! Which records a name a person typed names, for the lookup that turns names into ids.
//!
//! The same rule the name-or-id request fields follow: the whole name, ignoring case and
//! extra spaces, or — for children, whom staff call by their first name — the first word(s)
//! of the name. Unlike those fields, a lookup returns every match rather than refusing an
//! ambiguous name: choosing among them is the caller's job.

/// A name as compared: trimmed, lower case, one space between words.
pub fn name_key(name: &str) -> String {
    name.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `typed` names `name` whole.
pub fn names(name: &str, typed: &str) -> bool {
    let typed = name_key(typed);
    !typed.is_empty() && name_key(name) == typed
}

/// `typed` names `name` whole, or is its first word(s) ("Amira" for "Amira Khan").
pub fn names_child(name: &str, typed: &str) -> bool {
    let typed = name_key(typed);
    if typed.is_empty() {
        return false;
    }
    let name = name_key(name);
    name == typed || name.starts_with(&format!("{typed} "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_matches_whole_ignoring_case_and_spaces() {
        assert!(names("Birch House", "  birch   HOUSE "));
        assert!(!names("Birch House", "Birch"));
        assert!(!names("Birch House", ""));
        assert!(!names("", "  "));
    }

    #[test]
    fn a_child_matches_by_first_name_too() {
        assert!(names_child("Amira Khan", "amira"));
        assert!(names_child("Amira Khan", "Amira Khan"));
        assert!(!names_child("Amira Khan", "Ami"));
        assert!(!names_child("Amira Khan", "Khan"));
        assert!(!names_child("Amira Khan", " "));
    }
}
