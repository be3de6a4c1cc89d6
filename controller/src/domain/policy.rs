//! Compiling what a device must enforce from what is on record.
//!
//! The compiler is a pure function: the same records always give the same policy. It starts
//! from the safest arrangement (camera off, web off) and only ever widens it where the records
//! allow; protected contacts are always included, whatever else is in force (Regulation 19).

use super::UnixMillis;

/// A contact no rule can block: emergency services, Childline, the social worker, and so on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedContact {
    pub id: String,
    pub home_id: String,
    pub name: String,
    pub address: String,
    pub added_by: String,
    pub added_at: UnixMillis,
}

/// Everything the compiler reads for one device.
#[derive(Clone, Debug)]
pub struct PolicyInputs<'a> {
    pub version: u64,
    pub issued_at: UnixMillis,
    pub child_name: &'a str,
    pub protected_contacts: &'a [ProtectedContact],
}

/// What one device must enforce, in plain types (the gRPC adapter maps it onto the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPolicy {
    pub version: u64,
    pub issued_at: UnixMillis,
    /// How the device greets the child: their first name only.
    pub child_display_name: String,
    pub camera_allowed: bool,
    pub camera_reason: String,
    pub web_allowed: bool,
    pub web_reason: String,
    /// `true`: apps run unless blocked; `false`: only allowed apps run.
    pub apps_allowed_by_default: bool,
    pub protected_contacts: Vec<(String, String)>,
    /// (topic, words the child reads on their device).
    pub explanations: Vec<(String, String)>,
}

/// Compiles the policy for one of a child's devices.
pub fn compile(inputs: &PolicyInputs<'_>) -> CompiledPolicy {
    let first_name = inputs
        .child_name
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let mut protected: Vec<(String, String)> = inputs
        .protected_contacts
        .iter()
        .map(|c| (c.name.clone(), c.address.clone()))
        .collect();
    protected.sort();
    protected.dedup();

    let camera_reason = "Your camera is off. It can be turned on when your social worker and \
                         your parents (or whoever has parental responsibility) have agreed it."
        .to_string();
    let web_reason = "The internet is off for now. It is turned on once a safe, filtered \
                      internet arrangement is written into your placement plan."
        .to_string();
    let always = if protected.is_empty() {
        "You can always ask staff to help you contact your social worker, Childline (0800 1111) \
         or the emergency services (999)."
            .to_string()
    } else {
        let names: Vec<&str> = protected.iter().map(|(n, _)| n.as_str()).collect();
        format!(
            "You can always contact these people, whatever else is happening: {}.",
            names.join(", ")
        )
    };

    CompiledPolicy {
        version: inputs.version,
        issued_at: inputs.issued_at,
        child_display_name: first_name,
        camera_allowed: false,
        camera_reason: camera_reason.clone(),
        web_allowed: false,
        web_reason: web_reason.clone(),
        apps_allowed_by_default: true,
        protected_contacts: protected,
        explanations: vec![
            ("always".into(), always),
            ("camera".into(), camera_reason),
            ("web".into(), web_reason),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(name: &str, address: &str) -> ProtectedContact {
        ProtectedContact {
            id: format!("pc-{name}"),
            home_id: "home-1".into(),
            name: name.into(),
            address: address.into(),
            added_by: "stf-1".into(),
            added_at: 0,
        }
    }

    #[test]
    fn the_starting_policy_is_the_safe_one() {
        let p = compile(&PolicyInputs {
            version: 7,
            issued_at: 1,
            child_name: "Amira Khan",
            protected_contacts: &[],
        });
        assert_eq!(p.version, 7);
        assert_eq!(p.child_display_name, "Amira");
        assert!(!p.camera_allowed);
        assert!(!p.web_allowed);
        assert!(p.explanations.iter().any(|(_, t)| t.contains("Childline")));
    }

    // clause R19 (controller side): protected contacts always reach the device.
    #[test]
    fn r19_protected_contacts_are_always_compiled_in() {
        let contacts = [
            contact("Childline", "08001111"),
            contact("Emergency", "999"),
        ];
        let p = compile(&PolicyInputs {
            version: 1,
            issued_at: 1,
            child_name: "Sam",
            protected_contacts: &contacts,
        });
        assert_eq!(p.protected_contacts.len(), 2);
        assert!(p.explanations[0].1.contains("Childline, Emergency"));
    }
}
