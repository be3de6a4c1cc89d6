//! Whether a file may be run (or loaded as program code) *before* it runs: the decision the
//! exec guard asks for every exec and library open of a child's process.
//!
//! A program is what its file is, not what it is called. The platform guard resolves the
//! plan's entries to files (an allowed app to the trusted files it names; a blocked app to the
//! contents of every file it names) and hands each decision the facts about one file: where
//! it is, whether that place is trusted, and — only when it could matter — its content
//! (size + SHA-256). Nothing here reads a file or the clock.
//!
//! - A copy of a blocked program is still that program, under any name and anywhere: its
//!   content is blocked.
//! - When only allowed apps may run, a program runs only from a trusted place, at a path an
//!   allowed app or a session essential resolved to, with the content it had then.
//! - The interpreter of a script and the loader of a program that were just allowed in the
//!   same exec come with it ([`FileUse::Granted`]) — unless their content is blocked, so a
//!   script whose interpreter is blocked is refused.
//! - The system's program loader started directly (`ld.so ./prog`) is refused: it would run
//!   a program the guard never saw.
//! - Program code (an ELF library) from a place the child can write to is refused when only
//!   allowed apps may run (`LD_PRELOAD`, `dlopen`), and whenever its content is blocked.
//! - Only a child's processes are governed here; everything else is allowed, so a mistake in
//!   the guard can never stop the system itself (the kill backstop still stops a blocked app
//!   whoever runs it).

use std::collections::{HashMap, HashSet};

use super::{AppRules, AppVerdict, BlockReason, FIRST_CHILD_UID, LAST_CHILD_UID};

/// What a file holds: its size and the SHA-256 of its bytes. Two files with the same content
/// are the same program, whatever they are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Content {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// A file an allow-list entry or essential resolved to, in a trusted place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedFile {
    /// The file's real path (symlinks followed).
    pub path: String,
    pub content: Content,
}

/// How a process is using the file it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileUse {
    /// Run as a program: `execve` of it.
    Program,
    /// The interpreter a script just allowed in the same exec named, or the loader of a
    /// program just allowed in the same exec.
    Granted,
    /// Opened by a process as program code (an ELF shared object or executable), e.g. by
    /// the loader for `LD_PRELOAD`.
    Library,
}

/// What the guard knows about one file a process is about to run or load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts<'a> {
    /// The file's real path.
    pub path: &'a str,
    /// Root-owned, under a system location, not writable by the child.
    pub trusted: bool,
    pub size: u64,
    /// Its content, when the guard read it (see [`ExecRules::needs_content`]).
    pub content: Option<Content>,
    /// The real uid of the process; `None` when it could not be read.
    pub uid: Option<u32>,
    pub how: FileUse,
}

/// The files the plan's entries resolved to on this device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Allowed apps' and session essentials' trusted files.
    pub allowed: Vec<TrustedFile>,
    /// The contents of every file a blocked entry names.
    pub blocked: Vec<Content>,
    /// The contents of the system's program loaders (`ld-linux*.so*`, `ld-musl*`).
    pub loaders: Vec<Content>,
}

/// A plan's app rules with the files they resolved to, ready for the exec guard.
#[derive(Debug, Clone)]
pub struct ExecRules {
    rules: AppRules,
    allowed: HashMap<String, Content>,
    blocked: HashSet<Content>,
    loaders: HashSet<Content>,
    /// Sizes of blocked and loader contents: a file of another size cannot be either, so it
    /// need not be read at all.
    sizes: HashSet<u64>,
}

impl Default for ExecRules {
    fn default() -> Self {
        Self::new(AppRules::default(), Resolved::default())
    }
}

/// True for an account that belongs to a person (a child on this device). Unknown counts
/// as a child's: the safer answer for a process that could not be looked at.
pub fn is_childs(uid: Option<u32>) -> bool {
    uid.is_none_or(|uid| (FIRST_CHILD_UID..LAST_CHILD_UID).contains(&uid))
}

impl ExecRules {
    pub fn new(rules: AppRules, resolved: Resolved) -> Self {
        let allowed = resolved
            .allowed
            .into_iter()
            .map(|f| (f.path, f.content))
            .collect();
        let blocked: HashSet<Content> = resolved.blocked.into_iter().collect();
        let loaders: HashSet<Content> = resolved.loaders.into_iter().collect();
        let sizes = blocked
            .iter()
            .chain(loaders.iter())
            .map(|c| c.size)
            .collect();
        Self {
            rules,
            allowed,
            blocked,
            loaders,
            sizes,
        }
    }

    /// The app rules these were built from.
    pub fn rules(&self) -> &AppRules {
        &self.rules
    }

    /// True when nothing can be refused, so the guard may answer without looking.
    pub fn refuses_nothing(&self) -> bool {
        self.rules.stops_nothing() && self.blocked.is_empty()
    }

    /// Whether the decision about a file of this size at this path needs its content: only
    /// when a blocked program or a loader has this size, or the path is an allowed one.
    pub fn needs_content(&self, path: &str, size: u64) -> bool {
        self.sizes.contains(&size) || self.allowed.get(path).is_some_and(|c| c.size == size)
    }

    /// May this process run (or load) this file?
    pub fn decide(&self, f: &FileFacts<'_>) -> AppVerdict {
        if !is_childs(f.uid) || self.refuses_nothing() {
            return AppVerdict::Allow;
        }
        let content = f.content.filter(|c| c.size == f.size);
        if content.is_some_and(|c| self.blocked.contains(&c)) {
            return AppVerdict::Stop(BlockReason::Blocked);
        }
        // Content that had to be read and was not (too big to read in time, unreadable) may
        // be a blocked program: refused, the safer answer for a child's process.
        if content.is_none() && self.sizes.contains(&f.size) {
            return AppVerdict::Stop(BlockReason::Blocked);
        }
        let only_allowed = self.rules.only_allowed();
        match f.how {
            FileUse::Library => {
                if !f.trusted && only_allowed {
                    AppVerdict::Stop(BlockReason::UntrustedCode)
                } else {
                    AppVerdict::Allow
                }
            }
            FileUse::Granted => {
                if only_allowed && !f.trusted {
                    AppVerdict::Stop(self.rules.not_allowed_reason())
                } else {
                    AppVerdict::Allow
                }
            }
            FileUse::Program => {
                if content.is_some_and(|c| self.loaders.contains(&c)) {
                    return AppVerdict::Stop(BlockReason::Loader);
                }
                if !only_allowed {
                    return if self.rules.blocked_by_name(Some(f.path), "") {
                        AppVerdict::Stop(BlockReason::Blocked)
                    } else {
                        AppVerdict::Allow
                    };
                }
                let known =
                    f.trusted && content.is_some() && self.allowed.get(f.path).copied() == content;
                if known {
                    AppVerdict::Allow
                } else {
                    AppVerdict::Stop(self.rules.not_allowed_reason())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_proto::agent::v1::{AppDefault, AppRule, DevicePolicy};

    fn content(n: u8, size: u64) -> Content {
        Content {
            size,
            sha256: [n; 32],
        }
    }

    const GAME: u8 = 1;
    const PYTHON: u8 = 2;
    const BASH: u8 = 3;
    const LOADER: u8 = 4;
    const CHILD: Option<u32> = Some(1001);

    fn rules(default: AppDefault, allowed: &[&str], blocked: &[&str]) -> ExecRules {
        let policy = DevicePolicy {
            version: 2,
            apps: Some(AppRule {
                default: default as i32,
                allowed: allowed.iter().map(|s| s.to_string()).collect(),
                blocked: blocked.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        };
        let app_rules = AppRules::from_policy(&policy, &["/usr/bin/bash".into()]);
        let mut resolved = Resolved {
            allowed: vec![TrustedFile {
                path: "/usr/bin/bash".into(),
                content: content(BASH, 100),
            }],
            blocked: vec![],
            loaders: vec![content(LOADER, 400)],
        };
        if !blocked.is_empty() {
            resolved.blocked = vec![content(GAME, 200), content(PYTHON, 300)];
        }
        for a in allowed {
            resolved.allowed.push(TrustedFile {
                path: format!("/usr/bin/{a}"),
                content: content(GAME, 200),
            });
        }
        ExecRules::new(app_rules, resolved)
    }

    fn file(path: &str, trusted: bool, c: Content, how: FileUse) -> FileFacts<'_> {
        FileFacts {
            path,
            trusted,
            size: c.size,
            content: Some(c),
            uid: CHILD,
            how,
        }
    }

    // clause D4: content, not name.
    #[test]
    fn d4_a_renamed_copy_of_a_blocked_program_is_refused_anywhere() {
        let r = rules(AppDefault::Allow, &[], &["/opt/games/blockedgame"]);
        assert!(r.needs_content("/home/amira/.x", 200));
        assert!(!r.needs_content("/home/amira/.x", 201));
        let stop = AppVerdict::Stop(BlockReason::Blocked);
        let copy = file(
            "/home/amira/.x",
            false,
            content(GAME, 200),
            FileUse::Program,
        );
        assert_eq!(r.decide(&copy), stop);
        // Other programs of the same size but other content run.
        let other = file("/home/amira/.x", false, content(9, 200), FileUse::Program);
        assert_eq!(r.decide(&other), AppVerdict::Allow);
        // The blocked path itself, even unread.
        let unread = FileFacts {
            content: None,
            ..file(
                "/opt/games/blockedgame",
                true,
                content(9, 1),
                FileUse::Program,
            )
        };
        assert_eq!(r.decide(&unread), stop);
        // The right size but not read in time: refused rather than guessed.
        let unread_copy = FileFacts {
            content: None,
            ..copy
        };
        assert_eq!(r.decide(&unread_copy), stop);
        // Not a child's process: the guard leaves it to the kill backstop.
        let root = FileFacts {
            uid: Some(0),
            ..copy
        };
        assert_eq!(r.decide(&root), AppVerdict::Allow);
    }

    // clause D4
    #[test]
    fn d4_a_script_whose_interpreter_is_blocked_is_refused() {
        let r = rules(AppDefault::Allow, &[], &["python3"]);
        let interpreter = file(
            "/usr/bin/python3",
            true,
            content(PYTHON, 300),
            FileUse::Granted,
        );
        assert_eq!(
            r.decide(&interpreter),
            AppVerdict::Stop(BlockReason::Blocked)
        );
        let library = file(
            "/home/a/lib.so",
            false,
            content(PYTHON, 300),
            FileUse::Library,
        );
        assert_eq!(r.decide(&library), AppVerdict::Stop(BlockReason::Blocked));
    }

    // clause D4: `cp python3 ~/bash && ~/bash`.
    #[test]
    fn d4_only_allowed_needs_a_trusted_path_with_its_resolved_content() {
        let r = rules(AppDefault::Block, &["maths"], &[]);
        let stop = AppVerdict::Stop(BlockReason::NotAllowed);
        let bash = file("/usr/bin/bash", true, content(BASH, 100), FileUse::Program);
        assert_eq!(r.decide(&bash), AppVerdict::Allow);
        let maths = file("/usr/bin/maths", true, content(GAME, 200), FileUse::Program);
        assert_eq!(r.decide(&maths), AppVerdict::Allow);
        // A copy of python called bash, in the child's folder.
        let fake = file(
            "/home/amira/bash",
            false,
            content(PYTHON, 300),
            FileUse::Program,
        );
        assert_eq!(r.decide(&fake), stop);
        // The real bash's content in the child's folder is still not trusted there.
        let copied = file(
            "/home/amira/bash",
            false,
            content(BASH, 100),
            FileUse::Program,
        );
        assert_eq!(r.decide(&copied), stop);
        // Changed since it was resolved (or never read): not the allowed app.
        let changed = file(
            "/usr/bin/bash",
            true,
            content(PYTHON, 100),
            FileUse::Program,
        );
        assert_eq!(r.decide(&changed), stop);
        let unread = FileFacts {
            content: None,
            ..bash
        };
        assert_eq!(r.decide(&unread), stop);
        // The interpreter or loader of an allowed app comes with it, from trusted places only.
        let interp = file(
            "/usr/bin/python3",
            true,
            content(PYTHON, 300),
            FileUse::Granted,
        );
        assert_eq!(r.decide(&interp), AppVerdict::Allow);
        let untrusted = file(
            "/tmp/python3",
            false,
            content(PYTHON, 300),
            FileUse::Granted,
        );
        assert_eq!(r.decide(&untrusted), stop);
        // System accounts are left alone.
        let system = FileFacts {
            uid: Some(998),
            ..fake
        };
        assert_eq!(r.decide(&system), AppVerdict::Allow);
    }

    // clause D4: `ld.so ./prog` and `LD_PRELOAD=~/x.so`.
    #[test]
    fn d4_the_loader_started_directly_and_untrusted_libraries_are_refused() {
        for r in [
            rules(AppDefault::Block, &["maths"], &[]),
            rules(AppDefault::Allow, &[], &["game"]),
        ] {
            let direct = file(
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                true,
                content(LOADER, 400),
                FileUse::Program,
            );
            assert_eq!(r.decide(&direct), AppVerdict::Stop(BlockReason::Loader));
            let as_loader = FileFacts {
                how: FileUse::Granted,
                ..direct
            };
            assert_eq!(r.decide(&as_loader), AppVerdict::Allow);
        }
        let only = rules(AppDefault::Block, &["maths"], &[]);
        let preload = file("/home/amira/x.so", false, content(7, 50), FileUse::Library);
        assert_eq!(
            only.decide(&preload),
            AppVerdict::Stop(BlockReason::UntrustedCode)
        );
        let system_lib = file("/usr/lib/libc.so.6", true, content(8, 50), FileUse::Library);
        assert_eq!(only.decide(&system_lib), AppVerdict::Allow);
        // Where anything not blocked may run, a program's own library may load.
        let block = rules(AppDefault::Allow, &[], &["game"]);
        assert_eq!(block.decide(&preload), AppVerdict::Allow);
    }

    #[test]
    fn d4_nothing_is_refused_before_a_policy_and_an_unknown_owner_is_a_childs() {
        let r = ExecRules::default();
        assert!(r.refuses_nothing());
        let any = file("/tmp/x", false, content(LOADER, 400), FileUse::Program);
        assert_eq!(r.decide(&any), AppVerdict::Allow);
        assert!(is_childs(None));
        assert!(is_childs(Some(1000)));
        assert!(!is_childs(Some(0)));
        assert!(!is_childs(Some(65534)));
    }
}
