//! May this device call, text or message this address now? The contact decision, pure.
//!
//! One function, [`may_contact`], decides for every platform: a Linux phone's modem hook, an
//! Android call-screening shim and `haven-agent check-contact` all ask the screening socket,
//! which asks this. No I/O and no clock: the caller passes the local time in, so every rule
//! is tested without waiting for 4pm.
//!
//! The order of the rules is the order of their importance:
//! 1. a protected contact (social worker, advocate, Childline…) is always allowed, whatever
//!    else is in force — lockdown, the safe default, time windows (Regulation 19);
//! 2. an address on no list is *unknown*: refused, and reported as such so a manager can look
//!    at it (GD3);
//! 3. a lockdown of calls or messages refuses everyone else;
//! 4. an approved contact is allowed on the channels the plan lists, inside its time windows.
//!
//! Addresses are compared after [`normalise_address`], so `07700 900123`, `+44 7700 900123`
//! and `(0)7700-900123` are one number, and messaging handles ignore case.

use haven_proto::agent::v1::{Channel, Contact, DevicePolicy, Lockdown, TimeWindow, ViolationKind};

/// The device's local time, as contact windows are written: ISO weekday and minutes after
/// local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// 1 (Monday) ..= 7 (Sunday).
    pub weekday: u8,
    /// 0 ..= 1439.
    pub minute: u32,
}

impl LocalTime {
    pub fn new(weekday: u8, minute: u32) -> Self {
        Self {
            weekday: weekday.clamp(1, 7),
            minute: minute.min(24 * 60 - 1),
        }
    }

    /// The device's local time now (the system time zone; UTC if it cannot be read).
    pub fn now() -> Self {
        let now = jiff::Zoned::now();
        let weekday = u8::try_from(now.weekday().to_monday_one_offset()).unwrap_or(1);
        let minute =
            u32::try_from(i32::from(now.hour()) * 60 + i32::from(now.minute())).unwrap_or_default();
        Self::new(weekday, minute)
    }
}

/// The answer to "may I contact this address now?", with a reason in words for the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactDecision {
    Allow {
        reason: String,
    },
    /// A known contact, refused for now (outside their times, or a lockdown).
    Deny {
        reason: String,
    },
    /// An address on no list: refused, and reported so staff can look at it (GD3).
    Unknown {
        reason: String,
    },
}

impl ContactDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, ContactDecision::Allow { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            ContactDecision::Allow { reason }
            | ContactDecision::Deny { reason }
            | ContactDecision::Unknown { reason } => reason,
        }
    }

    /// What to report for this decision; `None` when nothing was blocked.
    pub fn violation_kind(&self) -> Option<ViolationKind> {
        match self {
            ContactDecision::Allow { .. } => None,
            ContactDecision::Deny { .. } => Some(ViolationKind::ContactBlocked),
            ContactDecision::Unknown { .. } => Some(ViolationKind::UnknownContact),
        }
    }
}

/// One form for an address, so `07700 900123`, `+44 7700 900123` and `(0)7700-900123` are one
/// number and messaging handles ignore case. The shared rule lives with the built-in protected
/// contacts, so a protected number is recognised the same way everywhere.
pub fn normalise_address(raw: &str) -> String {
    haven_protected::normalise_address(raw)
}

fn channel_verb(channel: Channel) -> &'static str {
    match channel {
        Channel::Call => "call",
        Channel::Sms => "text",
        Channel::Messaging => "message",
        Channel::Unspecified => "contact",
    }
}

/// The lockdown channel ("calls" or "messages") that covers `channel`.
fn lockdown_channel(channel: Channel) -> Option<&'static str> {
    match channel {
        Channel::Call => Some("calls"),
        Channel::Sms | Channel::Messaging => Some("messages"),
        Channel::Unspecified => None,
    }
}

fn has_address(contact: &Contact, wanted: &str, channel: Option<Channel>) -> bool {
    contact.addresses.iter().any(|a| {
        let on_channel = match channel {
            None => true,
            Some(ch) => a.channel == ch as i32 || a.channel == Channel::Unspecified as i32,
        };
        on_channel && !a.address.trim().is_empty() && normalise_address(&a.address) == wanted
    })
}

fn display_name(contact: &Contact) -> &str {
    let name = contact.name.trim();
    if name.is_empty() { "this person" } else { name }
}

fn in_window(window: &TimeWindow, at: LocalTime) -> bool {
    let day_ok = window.weekdays.is_empty() || window.weekdays.contains(&u32::from(at.weekday));
    let (start, end) = (window.start_minute, window.end_minute);
    let time_ok = if start <= end {
        at.minute >= start && at.minute < end
    } else {
        // A window across midnight, e.g. 22:00 to 01:00.
        at.minute >= start || at.minute < end
    };
    day_ok && time_ok
}

/// "4pm", "4:30pm", "midnight", "midday".
pub fn clock(minute: u32) -> String {
    let minute = minute % (24 * 60);
    let (h, m) = (minute / 60, minute % 60);
    match (h, m) {
        (0, 0) => "midnight".into(),
        (12, 0) => "midday".into(),
        _ => {
            let suffix = if h < 12 { "am" } else { "pm" };
            let h12 = match h % 12 {
                0 => 12,
                h => h,
            };
            if m == 0 {
                format!("{h12}{suffix}")
            } else {
                format!("{h12}:{m:02}{suffix}")
            }
        }
    }
}

fn weekday_name(day: u32) -> &'static str {
    match day {
        1 => "Mondays",
        2 => "Tuesdays",
        3 => "Wednesdays",
        4 => "Thursdays",
        5 => "Fridays",
        6 => "Saturdays",
        7 => "Sundays",
        _ => "some days",
    }
}

fn join_words(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// "between 4pm and 8pm on Mondays and Fridays".
pub fn describe_window(window: &TimeWindow) -> String {
    let mut text = format!(
        "between {} and {}",
        clock(window.start_minute),
        clock(window.end_minute)
    );
    if !window.weekdays.is_empty() {
        let days: Vec<String> = window
            .weekdays
            .iter()
            .map(|d| weekday_name(*d).to_string())
            .collect();
        text.push_str(&format!(" on {}", join_words(&days)));
    }
    text
}

/// "You can call Nan between 4pm and 8pm."
fn when_you_can(verb: &str, contact: &Contact) -> String {
    let windows: Vec<String> = contact.windows.iter().map(describe_window).collect();
    format!(
        "You can {verb} {} {}.",
        display_name(contact),
        windows.join(", or ")
    )
}

/// "You can always contact Emergency services, Childline, … and your social worker."
fn always_reachable(policy: &DevicePolicy) -> String {
    let names: Vec<String> = crate::core::always_reachable(policy)
        .iter()
        .map(|c| display_name(c).to_string())
        .collect();
    if names.is_empty() {
        "If you need help, talk to a member of staff.".into()
    } else {
        format!("You can always contact {}.", join_words(&names))
    }
}

fn lockdown_words(lockdown: &Lockdown, what: &str) -> String {
    let mut text = format!("{what} are paused for now");
    if !lockdown.reason.trim().is_empty() {
        text.push_str(&format!(": {}", lockdown.reason.trim()));
    }
    text.push('.');
    text
}

/// Decides whether `address` may be reached on `channel` at local time `at`.
pub fn may_contact(
    policy: &DevicePolicy,
    channel: Channel,
    address: &str,
    at: LocalTime,
) -> ContactDecision {
    let wanted = normalise_address(address);
    let verb = channel_verb(channel);
    if wanted.is_empty() {
        return ContactDecision::Deny {
            reason: "There is no number or name to check.".into(),
        };
    }
    // R19: a protected contact on any channel, before anything else is looked at. The
    // built-in list (999, Childline, …) comes first and does not depend on the policy at all:
    // not on a home having typed it in, not on a policy having arrived.
    if let Some(builtin) = haven_protected::builtin_for_number(&wanted) {
        return ContactDecision::Allow {
            reason: format!(
                "You can always {verb} {}, whatever else is in place.",
                builtin.name
            ),
        };
    }
    if let Some(protected) = policy
        .protected_contacts
        .iter()
        .find(|c| has_address(c, &wanted, None))
    {
        return ContactDecision::Allow {
            reason: format!(
                "You can always {verb} {}, whatever else is in place.",
                display_name(protected)
            ),
        };
    }
    if channel == Channel::Unspecified {
        return ContactDecision::Deny {
            reason: "Haven needs to know whether this is a call, a text or a message.".into(),
        };
    }
    let Some(contact) = policy
        .contacts
        .iter()
        .find(|c| has_address(c, &wanted, Some(channel)))
    else {
        // Known on another channel? Then it is a refusal, not a stranger.
        if let Some(other) = policy
            .contacts
            .iter()
            .find(|c| has_address(c, &wanted, None))
        {
            return ContactDecision::Deny {
                reason: format!(
                    "Your plan does not include being able to {verb} {} this way. If you would \
                     like to, you can ask staff with `haven-agent request`.",
                    display_name(other)
                ),
            };
        }
        return ContactDecision::Unknown {
            reason: format!(
                "That is not one of your contacts yet, so you cannot {verb} it from this device. \
                 If it is someone you would like to be in touch with, you can ask staff with \
                 `haven-agent request`. {}",
                always_reachable(policy)
            ),
        };
    };
    let lockdown = policy.lockdown.as_ref().filter(|l| l.active);
    if let (Some(lockdown), Some(locked)) = (lockdown, lockdown_channel(channel))
        && lockdown
            .channels
            .iter()
            .any(|c| c.trim().eq_ignore_ascii_case(locked))
    {
        let what = if locked == "calls" {
            "Calls"
        } else {
            "Messages"
        };
        return ContactDecision::Deny {
            reason: format!(
                "{} {}",
                lockdown_words(lockdown, what),
                always_reachable(policy)
            ),
        };
    }
    if !contact.windows.is_empty() && !contact.windows.iter().any(|w| in_window(w, at)) {
        return ContactDecision::Deny {
            reason: when_you_can(verb, contact),
        };
    }
    ContactDecision::Allow {
        reason: format!(
            "{} is one of your contacts, so you can {verb} them now.",
            display_name(contact)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_proto::agent::v1::ContactAddress;

    fn address(channel: Channel, address: &str) -> ContactAddress {
        ContactAddress {
            channel: channel as i32,
            address: address.into(),
            app: String::new(),
        }
    }

    fn nan() -> Contact {
        Contact {
            name: "Nan".into(),
            relationship: "grandmother".into(),
            addresses: vec![
                address(Channel::Call, "+447700900123"),
                address(Channel::Sms, "+447700900123"),
            ],
            windows: vec![TimeWindow {
                start_minute: 16 * 60,
                end_minute: 20 * 60,
                weekdays: vec![],
            }],
        }
    }

    fn childline() -> Contact {
        Contact {
            name: "Childline".into(),
            relationship: "helpline".into(),
            addresses: vec![address(Channel::Call, "08001111")],
            windows: vec![],
        }
    }

    fn policy() -> DevicePolicy {
        DevicePolicy {
            version: 3,
            contacts: vec![nan()],
            protected_contacts: vec![childline()],
            ..Default::default()
        }
    }

    fn lockdown(channels: &[&str]) -> Lockdown {
        Lockdown {
            active: true,
            id: "l1".into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            reason: "staff are worried about your safety tonight".into(),
            until_unix_ms: 0,
        }
    }

    const FIVE_PM: LocalTime = LocalTime {
        weekday: 3,
        minute: 17 * 60,
    };
    const NINE_AM: LocalTime = LocalTime {
        weekday: 3,
        minute: 9 * 60,
    };

    #[test]
    fn d3_addresses_are_compared_in_one_form() {
        for same in [
            "07700 900123",
            "07700-900-123",
            "(07700) 900123",
            "+44 7700 900123",
            "+44 (0)7700 900123",
            "0044 7700 900123",
            "tel:+447700900123",
        ] {
            assert_eq!(normalise_address(same), "+447700900123", "{same}");
        }
        assert_eq!(normalise_address("0800 1111"), "+448001111");
        assert_eq!(normalise_address("116 123"), "116123");
        assert_eq!(
            normalise_address("  Nan.Smith@Example.ORG "),
            "nan.smith@example.org"
        );
        assert_eq!(normalise_address("@NanSmith"), "@nansmith");
        assert_eq!(normalise_address("   "), "");
    }

    #[test]
    fn d3_an_approved_contact_is_allowed_inside_their_window() {
        let d = may_contact(&policy(), Channel::Call, "07700 900123", FIVE_PM);
        assert!(d.is_allowed(), "{d:?}");
        assert!(d.reason().contains("Nan"));
        assert_eq!(d.violation_kind(), None);
        assert!(may_contact(&policy(), Channel::Sms, "+447700900123", FIVE_PM).is_allowed());
    }

    #[test]
    fn d3_outside_the_window_the_child_is_told_when_they_can() {
        let d = may_contact(&policy(), Channel::Call, "07700900123", NINE_AM);
        assert_eq!(
            d,
            ContactDecision::Deny {
                reason: "You can call Nan between 4pm and 8pm.".into()
            }
        );
        assert_eq!(d.violation_kind(), Some(ViolationKind::ContactBlocked));
        // End of the window is exclusive, start inclusive.
        let at = |minute| LocalTime::new(3, minute);
        assert!(may_contact(&policy(), Channel::Call, "07700900123", at(960)).is_allowed());
        assert!(!may_contact(&policy(), Channel::Call, "07700900123", at(1200)).is_allowed());
    }

    #[test]
    fn d3_windows_can_name_weekdays_and_cross_midnight() {
        let mut p = policy();
        p.contacts[0].windows = vec![
            TimeWindow {
                start_minute: 22 * 60,
                end_minute: 60,
                weekdays: vec![5, 6],
            },
            TimeWindow {
                start_minute: 9 * 60 + 30,
                end_minute: 12 * 60,
                weekdays: vec![7],
            },
        ];
        let call = |at| may_contact(&p, Channel::Call, "07700900123", at);
        assert!(call(LocalTime::new(5, 23 * 60)).is_allowed());
        assert!(call(LocalTime::new(6, 30)).is_allowed());
        assert!(!call(LocalTime::new(1, 23 * 60)).is_allowed());
        assert!(call(LocalTime::new(7, 10 * 60)).is_allowed());
        assert_eq!(
            call(LocalTime::new(7, 13 * 60)).reason(),
            "You can call Nan between 10pm and 1am on Fridays and Saturdays, or between 9:30am \
             and midday on Sundays."
        );
    }

    #[test]
    fn d3_a_contact_is_only_allowed_on_the_channels_the_plan_lists() {
        let d = may_contact(&policy(), Channel::Messaging, "+447700900123", FIVE_PM);
        assert!(matches!(d, ContactDecision::Deny { .. }), "{d:?}");
        assert!(d.reason().contains("this way"));
    }

    #[test]
    fn d3_lockdown_of_calls_refuses_approved_contacts_but_not_texts() {
        let mut p = policy();
        p.lockdown = Some(lockdown(&["calls"]));
        let d = may_contact(&p, Channel::Call, "07700900123", FIVE_PM);
        assert!(matches!(d, ContactDecision::Deny { .. }), "{d:?}");
        assert!(d.reason().starts_with("Calls are paused for now"));
        assert!(
            d.reason()
                .contains("You can always contact Emergency services, Childline"),
            "{d:?}"
        );
        assert!(may_contact(&p, Channel::Sms, "07700900123", FIVE_PM).is_allowed());
        p.lockdown = Some(lockdown(&["messages"]));
        assert!(!may_contact(&p, Channel::Sms, "07700900123", FIVE_PM).is_allowed());
        assert!(may_contact(&p, Channel::Call, "07700900123", FIVE_PM).is_allowed());
        // An inactive lockdown changes nothing.
        p.lockdown.as_mut().unwrap().active = false;
        assert!(may_contact(&p, Channel::Sms, "07700900123", FIVE_PM).is_allowed());
    }

    #[test]
    fn gd3_an_address_on_no_list_is_unknown_and_reported_as_such() {
        let d = may_contact(&policy(), Channel::Call, "07700 900999", FIVE_PM);
        assert!(matches!(d, ContactDecision::Unknown { .. }), "{d:?}");
        assert_eq!(d.violation_kind(), Some(ViolationKind::UnknownContact));
        assert!(d.reason().contains("haven-agent request"));
        assert!(d.reason().contains("Childline"));
    }

    #[test]
    fn r19_protected_contacts_are_allowed_in_lockdown_and_outside_windows() {
        let mut p = policy();
        p.lockdown = Some(lockdown(&["calls", "messages", "web", "camera", "apps"]));
        for channel in [Channel::Call, Channel::Sms, Channel::Messaging] {
            let d = may_contact(&p, channel, "0800 1111", NINE_AM);
            assert!(d.is_allowed(), "{channel:?}: {d:?}");
            assert!(d.reason().contains("always"));
        }
        // The safe default keeps them too.
        let fallback = crate::core::safe_default_keeping_protected(&p);
        assert!(may_contact(&fallback, Channel::Call, "+448001111", NINE_AM).is_allowed());
        assert!(!may_contact(&fallback, Channel::Call, "07700900123", FIVE_PM).is_allowed());
    }

    #[test]
    fn r19_999_112_and_childline_need_no_list_and_pass_a_full_lockdown() {
        let locked = DevicePolicy {
            lockdown: Some(lockdown(&["calls", "messages", "web", "camera", "apps"])),
            ..Default::default()
        };
        for p in [DevicePolicy::default(), crate::core::safe_default(), locked] {
            for number in ["999", "112", "0800 1111", "+448001111"] {
                for channel in [Channel::Call, Channel::Sms] {
                    let d = may_contact(&p, channel, number, FIVE_PM);
                    assert!(d.is_allowed(), "{number} {channel:?}: {d:?}");
                    assert_eq!(d.violation_kind(), None);
                }
            }
        }
    }

    // clause R19
    #[test]
    fn r19_a_protected_contact_wins_over_a_windowed_entry_for_the_same_number() {
        let mut p = policy();
        let mut limited = childline();
        limited.windows = vec![TimeWindow {
            start_minute: 0,
            end_minute: 1,
            weekdays: vec![],
        }];
        p.contacts.push(limited);
        p.lockdown = Some(lockdown(&["calls"]));
        assert!(may_contact(&p, Channel::Call, "08001111", NINE_AM).is_allowed());
    }

    #[test]
    fn d3_the_safe_default_allows_nobody_else_and_empty_addresses_are_refused() {
        let p = crate::core::safe_default();
        let d = may_contact(&p, Channel::Call, "07700900123", FIVE_PM);
        assert!(matches!(d, ContactDecision::Unknown { .. }));
        assert!(!may_contact(&policy(), Channel::Call, "  ", FIVE_PM).is_allowed());
        assert!(!may_contact(&policy(), Channel::Unspecified, "07700900123", FIVE_PM).is_allowed());
    }

    #[test]
    fn clock_times_read_naturally() {
        assert_eq!(clock(0), "midnight");
        assert_eq!(clock(720), "midday");
        assert_eq!(clock(960), "4pm");
        assert_eq!(clock(990), "4:30pm");
        assert_eq!(clock(9 * 60 + 5), "9:05am");
        assert_eq!(clock(1440), "midnight");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn channel() -> impl Strategy<Value = Channel> {
            prop_oneof![
                Just(Channel::Call),
                Just(Channel::Sms),
                Just(Channel::Messaging),
                Just(Channel::Unspecified),
            ]
        }

        fn lockdown_channels() -> impl Strategy<Value = Vec<String>> {
            proptest::sample::subsequence(vec!["calls", "messages", "web", "camera", "apps"], 0..=5)
                .prop_map(|v| v.into_iter().map(String::from).collect())
        }

        fn window() -> impl Strategy<Value = TimeWindow> {
            (
                0u32..1500,
                0u32..1500,
                proptest::collection::vec(0u32..9, 0..3),
            )
                .prop_map(|(start_minute, end_minute, weekdays)| TimeWindow {
                    start_minute,
                    end_minute,
                    weekdays,
                })
        }

        /// The same UK number, written the ways people write it.
        fn spelling(national: &str, style: u8) -> String {
            let rest = &national[1..];
            match style % 5 {
                0 => national.to_string(),
                1 => format!("+44{rest}"),
                2 => format!("+44 (0){} {}", &rest[..4], &rest[4..]),
                3 => format!("0044 {rest}"),
                _ => format!("{}-{}", &national[..5], &national[5..]),
            }
        }

        proptest! {
            // clause R19: whatever the policy says otherwise (lockdown, windows, the same number
            // listed as an ordinary contact, any channel, any time), a protected contact is
            // always allowed.
            #[test]
            fn r19_protected_contacts_are_always_allowed(
                digits in "7[0-9]{9}",
                listed_style in 0u8..5,
                asked_style in 0u8..5,
                asked_channel in channel(),
                listed_channel in channel(),
                locked in lockdown_channels(),
                active in any::<bool>(),
                windows in proptest::collection::vec(window(), 0..3),
                also_ordinary in any::<bool>(),
                weekday in 1u8..=7,
                minute in 0u32..1440,
                safe_default in any::<bool>(),
            ) {
                let national = format!("0{digits}");
                let protected = Contact {
                    name: "Social worker".into(),
                    addresses: vec![address(listed_channel, &spelling(&national, listed_style))],
                    windows: windows.clone(),
                    ..Default::default()
                };
                let mut p = policy();
                p.protected_contacts.push(protected.clone());
                if also_ordinary {
                    p.contacts.push(Contact { windows, ..protected });
                }
                p.lockdown = Some(Lockdown { active, channels: locked, ..Default::default() });
                if safe_default {
                    p = crate::core::safe_default_keeping_protected(&p);
                }
                let at = LocalTime::new(weekday, minute);
                let asked = spelling(&national, asked_style);
                let d = may_contact(&p, asked_channel, &asked, at);
                prop_assert!(d.is_allowed(), "{asked} on {asked_channel:?}: {d:?}");
            }

            // clause R19: the built-in list (999, 112, Childline, …) is allowed however it is
            // written, on any channel, at any time, whatever the policy — an empty one, the
            // safe default, a full lockdown, or a plan that lists the same number as an
            // ordinary contact with time windows — and is never reported.
            #[test]
            fn r19_the_built_in_list_is_always_allowed_and_never_reported(
                which in 0usize..16,
                style in 0u8..5,
                asked_channel in channel(),
                locked in lockdown_channels(),
                active in any::<bool>(),
                windows in proptest::collection::vec(window(), 0..3),
                listed_as_ordinary in any::<bool>(),
                state in 0u8..3,
                weekday in 1u8..=7,
                minute in 0u32..1440,
            ) {
                let numbers: Vec<&str> = haven_protected::BUILTIN
                    .iter()
                    .flat_map(|b| b.numbers.iter().copied())
                    .collect();
                let number = numbers[which % numbers.len()];
                let mut p = match state {
                    0 => DevicePolicy::default(),
                    1 => crate::core::safe_default(),
                    _ => policy(),
                };
                p.protected_contacts.clear();
                if listed_as_ordinary {
                    p.contacts.push(Contact {
                        name: "Someone".into(),
                        addresses: vec![address(Channel::Call, number)],
                        windows,
                        ..Default::default()
                    });
                }
                p.lockdown = Some(Lockdown { active, channels: locked, ..Default::default() });
                let compact: String = number.chars().filter(|c| !c.is_whitespace()).collect();
                let asked = if compact.len() <= 3 { compact } else { spelling(&compact, style) };
                let d = may_contact(&p, asked_channel, &asked, LocalTime::new(weekday, minute));
                prop_assert!(d.is_allowed(), "{asked} on {asked_channel:?}: {d:?}");
                prop_assert_eq!(d.violation_kind(), None);
            }

            // Garbage never panics and is never allowed unless it is a protected contact.
            #[test]
            fn d3_any_input_gets_an_answer(raw in "\\PC{0,40}", ch in channel()) {
                let d = may_contact(&crate::core::safe_default(), ch, &raw, FIVE_PM);
                prop_assert!(!d.is_allowed() || haven_protected::builtin_for_number(&raw).is_some());
                prop_assert!(!d.reason().is_empty());
            }
        }
    }
}
