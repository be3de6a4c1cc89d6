//! Each enum's table read both ways, complete, and in agreement with the domain's words.

use super::*;
use crate::domain;
use std::str::FromStr;

/// Every value this build knows (but `_UNSPECIFIED`) has one word, and the word reads back as
/// the same value; `_UNSPECIFIED`, an empty word and an unknown word stay unset.
fn round_trip<E: WireEnum + TryFrom<i32>>() {
    let mut known = 0;
    for i in 1..256 {
        match E::try_from(i) {
            Ok(v) => {
                known += 1;
                let w = word::<E>(i).unwrap_or_else(|| panic!("{v:?} has no word"));
                assert_eq!(value::<E>(w), Some(v), "{w:?}");
                assert_eq!(value::<E>(&format!(" {} ", w.to_uppercase())), Some(v));
                assert_eq!(wire::<E>(w), i);
            }
            Err(_) => assert_eq!(word::<E>(i), None),
        }
    }
    assert_eq!(known, E::WORDS.len(), "a value is in the table twice");
    assert_eq!(word::<E>(0), None);
    assert_eq!(wire::<E>(""), 0);
    assert_eq!(wire::<E>("no such thing"), 0);
    for (w, v) in E::ALSO {
        assert_eq!(value::<E>(w), Some(*v));
    }
}

#[test]
fn staff_roles_read_both_ways() {
    round_trip::<api::StaffRole>();
    for (v, w) in api::StaffRole::WORDS {
        let role = domain::role::Role::from_str(w).expect("a role");
        assert_eq!(role.as_str(), *w, "{v:?}");
    }
}

#[test]
fn enrollment_code_states_read_both_ways() {
    use domain::enrollment::CodeState;
    round_trip::<api::EnrollmentCodeState>();
    for s in [
        CodeState::Usable,
        CodeState::AlreadyUsed,
        CodeState::Expired,
        CodeState::Cancelled,
    ] {
        assert_ne!(wire::<api::EnrollmentCodeState>(s.word()), 0, "{s:?}");
    }
}

#[test]
fn device_statuses_read_both_ways() {
    use domain::records::DeviceStatus;
    round_trip::<api::DeviceStatus>();
    for (_, w) in api::DeviceStatus::WORDS {
        assert_eq!(DeviceStatus::parse(w).map(DeviceStatus::as_str), Some(*w));
    }
}

#[test]
fn certificate_standings_read_both_ways() {
    round_trip::<api::CertificateStanding>();
}

#[test]
fn guard_states_read_both_ways() {
    use domain::device_health::GuardState;
    round_trip::<api::GuardState>();
    for s in [
        GuardState::Armed,
        GuardState::Weakened,
        GuardState::Failed,
        GuardState::NotEnforcing,
    ] {
        assert_ne!(wire::<api::GuardState>(s.as_str()), 0, "{s:?}");
    }
    // A state from a newer agent is "not known" on the staff wire too.
    assert_eq!(wire::<api::GuardState>(GuardState::Unknown.as_str()), 0);
}

#[test]
fn violation_kinds_read_both_ways() {
    use domain::violations::ViolationKind;
    round_trip::<api::ViolationKind>();
    for k in ViolationKind::ALL.into_iter().chain([ViolationKind::Other]) {
        let v = wire::<api::ViolationKind>(k.words());
        assert_ne!(v, 0, "{k:?}");
        if k != ViolationKind::Other {
            assert_eq!(
                ViolationKind::parse(word::<api::ViolationKind>(v).unwrap()),
                Ok(k)
            );
        }
    }
}

#[test]
fn contact_channels_read_both_ways() {
    round_trip::<api::ContactChannel>();
}

#[test]
fn manager_tasks_read_both_ways() {
    round_trip::<api::ManagerTaskKind>();
    round_trip::<api::TaskDecision>();
    for (_, w) in api::TaskDecision::WORDS {
        let d = domain::violations::task_decision(w).expect("a decision");
        assert_eq!(d.as_str(), *w);
    }
}

#[test]
fn protective_reasons_read_both_ways() {
    use domain::emergency::ProtectiveReason;
    round_trip::<api::RestrictionReason>();
    for r in ProtectiveReason::ALL {
        let v = wire::<api::RestrictionReason>(r.as_str());
        assert_eq!(
            ProtectiveReason::from_str(word::<api::RestrictionReason>(v).unwrap()),
            Ok(r)
        );
    }
    assert_eq!(
        api::RestrictionReason::WORDS.len(),
        ProtectiveReason::ALL.len()
    );
}

#[test]
fn communication_channels_read_both_ways() {
    use domain::emergency::{Arrangement, LockChannel};
    round_trip::<api::CommunicationChannel>();
    for c in LockChannel::ALL {
        assert_ne!(wire::<api::CommunicationChannel>(c.as_str()), 0, "{c:?}");
    }
    for a in [Arrangement::Letters, Arrangement::Visits] {
        assert_ne!(wire::<api::CommunicationChannel>(a.as_str()), 0, "{a:?}");
    }
    // Every word is one the domain reads as a channel or an arrangement.
    for (_, w) in api::CommunicationChannel::WORDS {
        assert!(
            LockChannel::parse(w).is_ok() || Arrangement::parse(w).is_ok(),
            "{w}"
        );
    }
}

#[test]
fn lockdown_targets_read_both_ways() {
    use domain::emergency::LockdownTarget;
    round_trip::<api::LockdownTarget>();
    for t in [
        LockdownTarget::Home("h".into()),
        LockdownTarget::Child("c".into()),
        LockdownTarget::Device("d".into()),
    ] {
        assert_ne!(wire::<api::LockdownTarget>(t.kind()), 0, "{t:?}");
    }
}

#[test]
fn obligations_read_both_ways() {
    use domain::sanction::{ObligationKind, ObligationState};
    round_trip::<api::ObligationKind>();
    round_trip::<api::ObligationState>();
    for k in ObligationKind::ALL {
        let v = wire::<api::ObligationKind>(k.as_str());
        assert_eq!(
            ObligationKind::from_str(word::<api::ObligationKind>(v).unwrap()),
            Ok(k)
        );
    }
    for s in [
        ObligationState::Due,
        ObligationState::Overdue,
        ObligationState::Done,
    ] {
        assert_ne!(wire::<api::ObligationState>(s.as_str()), 0, "{s:?}");
    }
}

#[test]
fn notification_methods_read_both_ways() {
    use domain::sanction::NotifiedHow;
    round_trip::<api::NotificationMethod>();
    for (_, w) in api::NotificationMethod::WORDS {
        assert_eq!(NotifiedHow::from_str(w).map(NotifiedHow::as_str), Ok(*w));
    }
}

#[test]
fn request_decisions_read_both_ways() {
    use domain::reports::RequestDecision;
    round_trip::<api::RequestDecision>();
    for (_, w) in api::RequestDecision::WORDS {
        assert_eq!(
            RequestDecision::parse(w).map(RequestDecision::as_str),
            Ok(*w)
        );
    }
}

#[test]
fn web_exception_kinds_read_both_ways() {
    use domain::filter_lists::ExceptionKind;
    round_trip::<api::WebExceptionKind>();
    for (_, w) in api::WebExceptionKind::WORDS {
        assert_eq!(ExceptionKind::parse(w).map(ExceptionKind::as_str), Ok(*w));
    }
}

#[test]
fn lookup_kinds_read_both_ways() {
    round_trip::<api::LookupKind>();
}

#[test]
fn a_request_means_its_enum_or_else_its_old_words() {
    use api::RestrictionReason as R;
    let injury = i32::from(R::InjuryToChild);
    assert_eq!(
        pick::<R>(injury, "protective_reason", "", "reason").unwrap(),
        "injury-to-child"
    );
    // The old field alone goes to the domain as it always did, even when it is wrong.
    assert_eq!(
        pick::<R>(0, "protective_reason", "bored", "reason").unwrap(),
        "bored"
    );
    // Both, saying the same (in any of the spellings the domain reads).
    for same in ["Injury-To-Child", "injury_to_child", " injury to child "] {
        assert!(
            pick::<R>(injury, "protective_reason", same, "reason").is_ok(),
            "{same}"
        );
    }
    // Both, disagreeing, and a value this build does not know: refused naming the field.
    for (v, old) in [(injury, "property-damage"), (99, "")] {
        let e = pick::<R>(v, "protective_reason", old, "reason").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let reading = crate::service::errors::read(&e);
        assert!(
            format!("{reading:?}").contains("protective_reason"),
            "{reading:?}"
        );
    }
    use api::CommunicationChannel as C;
    let calls = i32::from(C::Calls);
    assert_eq!(
        pick_all::<C>(&[calls], "withdraw", &[], "channels").unwrap(),
        vec!["calls"]
    );
    assert_eq!(
        pick_all::<C>(&[], "withdraw", &["web".to_string()], "channels").unwrap(),
        vec!["web"]
    );
    assert!(pick_all::<C>(&[calls], "withdraw", &["web".to_string()], "channels").is_err());
    assert!(pick_all::<C>(&[0], "withdraw", &[], "channels").is_err());
}
