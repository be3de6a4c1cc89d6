//! Reads what the hardening checks need from this machine: the mount table, a few sysctl
//! values, the sudoers files and which accounts are children's. Reading only: nothing is run,
//! and never `sudo` as anyone.

use std::collections::HashMap;
use std::path::Path;

use super::{Inputs, Item, evaluate};
use crate::apps::exec::is_childs;

/// The sysctl values the checks look at.
const SYSCTLS: &[&str] = &[
    "vm.memfd_noexec",
    "kernel.unprivileged_userns_clone",
    "user.max_user_namespaces",
    "kernel.apparmor_restrict_unprivileged_userns",
];

/// Checks this machine now.
pub fn gather() -> Vec<Item> {
    evaluate(&inputs_from(Path::new("/")))
}

/// The inputs from a filesystem root (`/` on a device; a folder in tests).
pub fn inputs_from(root: &Path) -> Inputs {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    let mut sysctl = HashMap::new();
    for name in SYSCTLS {
        let file = format!("proc/sys/{}", name.replace('.', "/"));
        if let Ok(v) = std::fs::read_to_string(root.join(file)) {
            sysctl.insert(name.to_string(), v.trim().to_string());
        }
    }
    let mut sudoers = vec![read("etc/sudoers")];
    if let Ok(dir) = std::fs::read_dir(root.join("etc/sudoers.d")) {
        let mut files: Vec<_> = dir.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        // sudo skips names with a dot or ending in `~` in an included folder.
        for f in files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.contains('.') || name.ends_with('~') {
                continue;
            }
            sudoers.push(std::fs::read_to_string(&f).unwrap_or_default());
        }
    }
    let children = read("etc/passwd")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let uid: u32 = f.get(2)?.parse().ok()?;
            is_childs(Some(uid)).then(|| f[0].to_string())
        })
        .collect();
    Inputs {
        mountinfo: read("proc/self/mountinfo"),
        sysctl,
        sudoers,
        group: read("etc/group"),
        children,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d5_the_inputs_are_read_from_a_root_folder() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        };
        w("proc/sys/vm/memfd_noexec", "2\n");
        w(
            "etc/passwd",
            "root:x:0:0::/root:/bin/sh\namira:x:1001:1001::/home/amira:/bin/bash\n",
        );
        w("etc/group", "sudo:x:27:amira\n");
        w("etc/sudoers", "%sudo ALL=(ALL) ALL\n");
        w("etc/sudoers.d/README.txt", "amira ALL=(ALL) ALL\n");
        let i = inputs_from(dir.path());
        assert_eq!(i.children, vec!["amira".to_string()]);
        assert_eq!(
            i.sysctl.get("vm.memfd_noexec").map(String::as_str),
            Some("2")
        );
        assert_eq!(
            i.sudoers.len(),
            1,
            "files with a dot are skipped, as sudo does"
        );
        let items = evaluate(&i);
        assert!(
            items
                .iter()
                .any(|i| i.name == "no child account can sudo" && !i.ok)
        );
        // The real machine can always be looked at.
        assert_eq!(gather().len(), items.len());
    }
}
