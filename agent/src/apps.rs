//! Which programs may run: the platform-neutral decision an app guard asks for every process.
//!
//! A policy names apps (`AppRule.allowed` / `.blocked`, read through [`crate::core::effective`]);
//! on a computer an app is an executable. This module turns the policy's words into matchers
//! and answers "may this process run?" from plain facts about it, with no I/O, so every
//! platform guard (the Linux one today) and every test agrees on the same answer.
//!
//! How a rule entry names an app:
//! - an entry containing `/` is an exact executable path (`/usr/bin/firefox`);
//! - any other entry is a program name, compared (ignoring ASCII case, as the controller does)
//!   with the file name of the executable, and — for blocking only — with the kernel's short
//!   process name (`comm`, at most 15 bytes), which is the script's name for `#!` scripts.
//!
//! What is never stopped, so the device stays usable and the guard cannot hurt itself:
//! - essential processes the guard names as such ([`ProcessFacts::essential`]): process 1,
//!   kernel threads, the agent itself and the processes it runs under;
//! - when only allowed apps may run: anything not run by a child's account (system services
//!   and root, uid below [`FIRST_CHILD_UID`] or from [`LAST_CHILD_UID`] up, e.g. `nobody`), and
//!   the programs a desktop session needs ([`SESSION_ESSENTIALS`], plus any the device's
//!   installer adds), so that "only the agreed apps" does not mean "no desktop at all".
//!
//! What a file *is* counts, not what it is called: when only allowed apps may run, a name
//! allows a program only in a trusted place (root-owned, not writable by the child:
//! [`ProcessFacts::trusted`]), and the session essentials are allowed only at the trusted
//! paths the guard resolved them to, never by name — `cp python3 ~/bash` is not `bash`.
//! [`exec`] holds the decision made before a program runs, by content.
//!
//! An app on the blocked list is stopped whoever runs it (root included): a manager named it,
//! and a child must not get round a block by finding another account.

use haven_proto::agent::v1::DevicePolicy;

use crate::core::{AppMode, effective};

pub mod exec;

/// The first uid of an ordinary person's account (`UID_MIN` in `/etc/login.defs`).
pub const FIRST_CHILD_UID: u32 = 1000;
/// Accounts from here up are system accounts again (`UID_MAX` is 60000; `nobody` is 65534).
pub const LAST_CHILD_UID: u32 = 60000;

/// Programs a Linux desktop session cannot work without. When only allowed apps may run these
/// still do: they are the desktop, not apps a child chooses. Shells are here because session
/// start-up scripts use them; whatever a shell starts is checked on its own.
pub const SESSION_ESSENTIALS: &[&str] = &[
    "haven-agent",
    "systemd",
    "dbus-daemon",
    "dbus-broker",
    "dbus-broker-launch",
    "sh",
    "bash",
    "dash",
    "login",
    "Xorg",
    "Xwayland",
    "gdm-wayland-session",
    "gdm-x-session",
    "gnome-session-binary",
    "gnome-session-ctl",
    "gnome-shell",
    "gnome-keyring-daemon",
    "plasmashell",
    "startplasma-wayland",
    "startplasma-x11",
    "kwin_wayland",
    "kwin_x11",
    "ksmserver",
    "xfce4-session",
    "xfwm4",
    "xfce4-panel",
    "lxsession",
    "openbox",
    "pipewire",
    "pipewire-pulse",
    "wireplumber",
    "pulseaudio",
    "at-spi-bus-launcher",
    "at-spi2-registryd",
    "ibus-daemon",
    "xdg-desktop-portal",
    "xdg-document-portal",
    "xdg-permission-store",
    "gvfsd",
];

/// The kernel keeps at most this many bytes of a process name (`TASK_COMM_LEN` - 1).
const COMM_MAX: usize = 15;

/// One rule entry: an exact path or a program name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Path(String),
    Name(String),
}

impl Matcher {
    fn text(&self) -> &str {
        match self {
            Matcher::Path(s) | Matcher::Name(s) => s,
        }
    }

    fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim();
        if entry.is_empty() {
            None
        } else if entry.contains('/') {
            Some(Matcher::Path(entry.to_string()))
        } else {
            Some(Matcher::Name(entry.to_string()))
        }
    }

    /// Whether this entry names the process's executable.
    fn matches_exe(&self, exe: &str) -> bool {
        match self {
            Matcher::Path(path) => path == exe,
            Matcher::Name(name) => name.eq_ignore_ascii_case(app_name(exe)),
        }
    }

    /// Whether this entry names the process's short kernel name (truncated to 15 bytes).
    fn matches_comm(&self, comm: &str) -> bool {
        let Matcher::Name(name) = self else {
            return false;
        };
        let (name, comm) = (name.as_bytes(), comm.as_bytes());
        if name.len() > COMM_MAX && comm.len() == COMM_MAX {
            name[..COMM_MAX].eq_ignore_ascii_case(comm)
        } else {
            !comm.is_empty() && name.eq_ignore_ascii_case(comm)
        }
    }
}

/// The file name of an executable path, without the kernel's ` (deleted)` mark.
pub fn app_name(exe: &str) -> &str {
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
    exe.rsplit('/').next().unwrap_or(exe)
}

/// What a guard knows about a process when it asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessFacts<'a> {
    /// The executable's path (`/proc/PID/exe`), when it could be read.
    pub exe: Option<&'a str>,
    /// The kernel's short name for the process (`/proc/PID/comm`).
    pub comm: &'a str,
    /// The account running it (real uid), when known.
    pub uid: Option<u32>,
    /// Never to be stopped: process 1, a kernel thread, the agent or a process it runs under.
    pub essential: bool,
    /// The executable lies in a trusted place: root-owned, under a system location, and not
    /// writable by the child (the guard checks the file and every folder above it).
    pub trusted: bool,
}

impl ProcessFacts<'_> {
    /// The name people see: the executable's file name, or the kernel's name for it.
    pub fn name(&self) -> &str {
        match self.exe {
            Some(exe) if !app_name(exe).is_empty() => app_name(exe),
            _ => self.comm,
        }
    }
}

/// Why an app was stopped, in words staff read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// It is on the plan's blocked list.
    Blocked,
    /// Only the plan's allowed apps may run, and it is not one of them.
    NotAllowed,
    /// Apps are locked down, and it is not one of the allowed apps.
    LockedDown,
    /// The system's program loader was started directly (`ld.so ./prog`), which would run a
    /// program without the program itself being checked.
    Loader,
    /// Program code from a place the child can write to (an `LD_PRELOAD` library, a
    /// program's own library), while only allowed apps may run.
    UntrustedCode,
}

impl BlockReason {
    pub fn words(self) -> &'static str {
        match self {
            BlockReason::Blocked => "it is blocked in the child's plan",
            BlockReason::NotAllowed => "only the apps agreed in the child's plan may run",
            BlockReason::LockedDown => "apps are locked down",
            BlockReason::Loader => {
                "programs may not be started through the system's program loader"
            }
            BlockReason::UntrustedCode => {
                "only the apps agreed in the child's plan may run, and this code is not part of one"
            }
        }
    }
}

/// The answer for one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppVerdict {
    Allow,
    Stop(BlockReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    AllowUnlessBlocked {
        blocked: Vec<Matcher>,
    },
    OnlyAllowed {
        allowed: Vec<Matcher>,
        reason: BlockReason,
    },
}

/// A policy's app rules, ready to be asked about processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRules {
    mode: Mode,
    /// The trusted paths the session essentials and the installer's additions resolved to;
    /// only matter when only allowed apps may run. Paths only: an essential is never
    /// allowed by its name.
    always_allowed: Vec<String>,
}

impl Default for AppRules {
    /// Everything may run: what a guard enforces before its first policy.
    fn default() -> Self {
        Self {
            mode: Mode::AllowUnlessBlocked {
                blocked: Vec::new(),
            },
            always_allowed: Vec::new(),
        }
    }
}

fn matchers(entries: &[String]) -> Vec<Matcher> {
    entries.iter().filter_map(|e| Matcher::parse(e)).collect()
}

impl AppRules {
    /// The rules `policy` sets, where `always_allowed` are the full paths of the programs
    /// this device needs even when only allowed apps may run: the [`SESSION_ESSENTIALS`] and
    /// the installer's additions, resolved by the platform guard to trusted files. An entry
    /// that is not a full path is ignored: a name is what a child can copy.
    pub fn from_policy(policy: &DevicePolicy, always_allowed: &[String]) -> Self {
        let e = effective(policy);
        let locked = e
            .lockdown_channels
            .iter()
            .any(|c| c.eq_ignore_ascii_case("apps"));
        let mode = match &e.apps {
            AppMode::AllowUnlessBlocked { blocked } => Mode::AllowUnlessBlocked {
                blocked: matchers(blocked),
            },
            AppMode::OnlyAllowed { allowed } => Mode::OnlyAllowed {
                allowed: matchers(allowed),
                reason: if locked {
                    BlockReason::LockedDown
                } else {
                    BlockReason::NotAllowed
                },
            },
        };
        let always = always_allowed
            .iter()
            .map(|e| e.trim())
            .filter(|e| e.starts_with('/'))
            .map(str::to_string)
            .collect();
        Self {
            mode,
            always_allowed: always,
        }
    }

    /// The program names and paths the plan blocks (for resolving them to files' contents).
    pub fn blocked_entries(&self) -> Vec<&str> {
        match &self.mode {
            Mode::AllowUnlessBlocked { blocked } => blocked.iter().map(Matcher::text).collect(),
            Mode::OnlyAllowed { .. } => Vec::new(),
        }
    }

    /// The program names and paths the plan allows, when only allowed apps may run.
    pub fn allowed_entries(&self) -> Vec<&str> {
        match &self.mode {
            Mode::OnlyAllowed { allowed, .. } => allowed.iter().map(Matcher::text).collect(),
            Mode::AllowUnlessBlocked { .. } => Vec::new(),
        }
    }

    /// The trusted paths of the essentials and the installer's additions.
    pub fn always_allowed(&self) -> &[String] {
        &self.always_allowed
    }

    /// True when only allowed apps may run (an allow list or an apps lockdown).
    pub fn only_allowed(&self) -> bool {
        matches!(self.mode, Mode::OnlyAllowed { .. })
    }

    /// Why a program that is not allowed was stopped (only-allowed mode), else `Blocked`.
    pub fn not_allowed_reason(&self) -> BlockReason {
        match &self.mode {
            Mode::OnlyAllowed { reason, .. } => *reason,
            Mode::AllowUnlessBlocked { .. } => BlockReason::Blocked,
        }
    }

    /// Whether a blocked entry names this executable path or kernel name.
    pub fn blocked_by_name(&self, exe: Option<&str>, comm: &str) -> bool {
        match &self.mode {
            Mode::AllowUnlessBlocked { blocked } => blocked
                .iter()
                .any(|m| exe.is_some_and(|exe| m.matches_exe(exe)) || m.matches_comm(comm)),
            Mode::OnlyAllowed { .. } => false,
        }
    }

    /// True when no process can be stopped, so a guard may skip looking at processes at all.
    pub fn stops_nothing(&self) -> bool {
        matches!(&self.mode, Mode::AllowUnlessBlocked { blocked } if blocked.is_empty())
    }

    /// True when the decision depends on who runs the process (only allowed apps may run).
    pub fn needs_uid(&self) -> bool {
        matches!(self.mode, Mode::OnlyAllowed { .. })
    }

    /// May this process run?
    pub fn decide(&self, p: &ProcessFacts<'_>) -> AppVerdict {
        if p.essential {
            return AppVerdict::Allow;
        }
        match &self.mode {
            Mode::AllowUnlessBlocked { .. } => {
                // Blocking looks at both names: a renamed copy keeps its script or kernel
                // name, and a script keeps its own name in `comm` while its exe is the
                // interpreter. (A copy under a new name is caught by its content, before it
                // runs, in [`exec`].)
                if self.blocked_by_name(p.exe, p.comm) {
                    AppVerdict::Stop(BlockReason::Blocked)
                } else {
                    AppVerdict::Allow
                }
            }
            Mode::OnlyAllowed { allowed, reason } => {
                // Unknown owner counts as a child's (the safer answer).
                let childs = p
                    .uid
                    .is_none_or(|uid| (FIRST_CHILD_UID..LAST_CHILD_UID).contains(&uid));
                if !childs {
                    return AppVerdict::Allow;
                }
                // Allowing trusts the executable only, and only in a trusted place: a process
                // can rename its `comm` at will, and a child can copy any program under any
                // name into a folder of their own.
                let Some(exe) = p.exe.filter(|_| p.trusted) else {
                    return AppVerdict::Stop(*reason);
                };
                let essential = self.always_allowed.iter().any(|path| path == exe);
                if essential || allowed.iter().any(|m| m.matches_exe(exe)) {
                    AppVerdict::Allow
                } else {
                    AppVerdict::Stop(*reason)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_proto::agent::v1::{AppDefault, AppRule, Lockdown};

    fn policy(default: AppDefault, allowed: &[&str], blocked: &[&str]) -> DevicePolicy {
        DevicePolicy {
            version: 3,
            apps: Some(AppRule {
                default: default as i32,
                allowed: allowed.iter().map(|s| s.to_string()).collect(),
                blocked: blocked.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    /// A child's process; executables under /usr and /opt stand for trusted places.
    fn child(exe: &'static str, comm: &'static str) -> ProcessFacts<'static> {
        ProcessFacts {
            exe: Some(exe),
            comm,
            uid: Some(1001),
            essential: false,
            trusted: exe.starts_with("/usr/") || exe.starts_with("/opt/"),
        }
    }

    // clause D4
    #[test]
    fn d4_a_blocked_name_stops_the_app_by_file_name_or_kernel_name() {
        let rules = AppRules::from_policy(
            &policy(AppDefault::Allow, &[], &["roblox", "Chat-Roulette"]),
            &[],
        );
        assert!(!rules.stops_nothing());
        let stop = AppVerdict::Stop(BlockReason::Blocked);
        assert_eq!(rules.decide(&child("/opt/games/roblox", "roblox")), stop);
        // Case is ignored, as the controller ignores it.
        assert_eq!(rules.decide(&child("/usr/bin/chat-roulette", "x")), stop);
        // A script: exe is the interpreter, comm is the script's name.
        assert_eq!(rules.decide(&child("/usr/bin/python3.12", "roblox")), stop);
        // A deleted executable still has its name.
        assert_eq!(
            rules.decide(&child("/tmp/roblox (deleted)", "roblox")),
            stop
        );
        assert_eq!(
            rules.decide(&child("/usr/bin/firefox", "firefox")),
            AppVerdict::Allow
        );
        // Whoever runs it: root too.
        let root = ProcessFacts {
            uid: Some(0),
            ..child("/opt/games/roblox", "roblox")
        };
        assert_eq!(rules.decide(&root), stop);
    }

    // clause D4
    #[test]
    fn d4_a_path_entry_matches_only_that_executable() {
        let rules =
            AppRules::from_policy(&policy(AppDefault::Allow, &[], &["/opt/games/roblox"]), &[]);
        assert_eq!(
            rules.decide(&child("/opt/games/roblox", "roblox")),
            AppVerdict::Stop(BlockReason::Blocked)
        );
        assert_eq!(
            rules.decide(&child("/home/amira/roblox", "roblox")),
            AppVerdict::Allow
        );
    }

    // clause D4: the kernel's name is cut at 15 bytes.
    #[test]
    fn d4_a_long_name_matches_the_shortened_kernel_name() {
        let rules = AppRules::from_policy(
            &policy(AppDefault::Allow, &[], &["very-long-game-name"]),
            &[],
        );
        let p = ProcessFacts {
            exe: None,
            comm: "very-long-game-",
            uid: Some(1001),
            essential: false,
            trusted: false,
        };
        assert_eq!(rules.decide(&p), AppVerdict::Stop(BlockReason::Blocked));
        let short = ProcessFacts {
            comm: "very-long",
            ..p
        };
        assert_eq!(rules.decide(&short), AppVerdict::Allow);
        // An empty kernel name never matches.
        let empty = ProcessFacts { comm: "", ..p };
        assert_eq!(rules.decide(&empty), AppVerdict::Allow);
    }

    // clause D4
    #[test]
    fn d4_essential_processes_are_never_stopped() {
        let rules = AppRules::from_policy(&policy(AppDefault::Block, &[], &["init"]), &[]);
        let essential = ProcessFacts {
            exe: Some("/sbin/init"),
            comm: "init",
            uid: Some(1001),
            essential: true,
            trusted: false,
        };
        assert_eq!(rules.decide(&essential), AppVerdict::Allow);
    }

    // clause D4
    #[test]
    fn d4_only_allowed_apps_run_for_a_childs_account() {
        let rules = AppRules::from_policy(
            &policy(AppDefault::Block, &["libreoffice"], &[]),
            &[
                "/usr/bin/gnome-shell".to_string(),
                "/usr/local/bin/my-kiosk".to_string(),
                // A bare name is ignored: essentials are allowed by trusted path only.
                "bash".to_string(),
            ],
        );
        assert!(rules.needs_uid());
        let stop = AppVerdict::Stop(BlockReason::NotAllowed);
        assert_eq!(rules.decide(&child("/usr/bin/minecraft", "java")), stop);
        assert_eq!(
            rules.decide(&child(
                "/usr/lib/libreoffice/program/libreoffice",
                "soffice.bin"
            )),
            AppVerdict::Allow
        );
        // The desktop session and the installer's additions keep running.
        assert_eq!(
            rules.decide(&child("/usr/bin/gnome-shell", "gnome-shell")),
            AppVerdict::Allow
        );
        assert_eq!(
            rules.decide(&child("/usr/local/bin/my-kiosk", "my-kiosk")),
            AppVerdict::Allow
        );
        assert_eq!(rules.always_allowed().len(), 2);
        // A renamed kernel name does not make an app allowed.
        assert_eq!(
            rules.decide(&child("/usr/bin/minecraft", "libreoffice")),
            stop
        );
        // System accounts are not the child's apps.
        for uid in [0, 999, 65534] {
            let system = ProcessFacts {
                uid: Some(uid),
                ..child("/usr/sbin/cupsd", "cupsd")
            };
            assert_eq!(rules.decide(&system), AppVerdict::Allow, "uid {uid}");
        }
        // An owner that could not be read counts as the child's.
        let unknown = ProcessFacts {
            uid: None,
            ..child("/usr/bin/minecraft", "java")
        };
        assert_eq!(rules.decide(&unknown), stop);
    }

    // clause D4: `cp python3 ~/bash` is not bash, and `cp x ~/libreoffice` is not libreoffice.
    #[test]
    fn d4_a_copy_under_an_essential_or_allowed_name_in_a_childs_folder_is_not_allowed() {
        let rules = AppRules::from_policy(
            &policy(AppDefault::Block, &["libreoffice"], &[]),
            &["/usr/bin/bash".to_string()],
        );
        let stop = AppVerdict::Stop(BlockReason::NotAllowed);
        assert_eq!(
            rules.decide(&child("/usr/bin/bash", "bash")),
            AppVerdict::Allow
        );
        assert_eq!(rules.decide(&child("/home/amira/bash", "bash")), stop);
        assert_eq!(
            rules.decide(&child("/tmp/libreoffice", "libreoffice")),
            stop
        );
        // A trusted file that merely shares an essential's name elsewhere is not it either.
        assert_eq!(rules.decide(&child("/usr/games/bash", "bash")), stop);
        // An unreadable executable is never allowed by its kernel name.
        let hidden = ProcessFacts {
            exe: None,
            ..child("/usr/bin/bash", "bash")
        };
        assert_eq!(rules.decide(&hidden), stop);
    }

    // clause D4, GD4
    #[test]
    fn d4_a_lockdown_of_apps_lets_only_allowed_apps_run_and_says_why() {
        let mut p = policy(AppDefault::Allow, &["maths"], &["roblox"]);
        p.lockdown = Some(Lockdown {
            active: true,
            channels: vec!["apps".into()],
            ..Default::default()
        });
        let rules = AppRules::from_policy(&p, &[]);
        assert_eq!(
            rules.decide(&child("/usr/bin/firefox", "firefox")),
            AppVerdict::Stop(BlockReason::LockedDown)
        );
        assert_eq!(
            rules.decide(&child("/usr/bin/maths", "maths")),
            AppVerdict::Allow
        );
        assert_eq!(BlockReason::LockedDown.words(), "apps are locked down");
    }

    #[test]
    fn d4_the_safe_default_stops_nothing_and_names_are_readable() {
        let rules = AppRules::from_policy(&crate::core::safe_default(), &[]);
        assert!(rules.stops_nothing());
        assert!(AppRules::default().stops_nothing());
        assert_eq!(app_name("/usr/bin/firefox"), "firefox");
        assert_eq!(app_name("/tmp/x (deleted)"), "x");
        assert_eq!(app_name("bare"), "bare");
        assert_eq!(child("/usr/bin/firefox", "ff").name(), "firefox");
        let no_exe = ProcessFacts {
            exe: None,
            ..child("/x", "kworker")
        };
        assert_eq!(no_exe.name(), "kworker");
        // Blank entries are ignored rather than matching everything.
        let blank = AppRules::from_policy(&policy(AppDefault::Allow, &[], &["  "]), &[]);
        assert!(blank.stops_nothing());
    }
}
