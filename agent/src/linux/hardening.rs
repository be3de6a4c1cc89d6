//! Whether the device is set up so that the guards hold (D4, D5): what the agent cannot do
//! itself and a home's IT person must. Each item is checked from plain inputs — the mount
//! table's text, sysctl values, the sudoers files — so the rules are tested without the
//! machine; [`gather`] reads those inputs. A missing item is reported, with the one line that
//! fixes it, and the device says "enforcing, weakened" instead of pretending.
//!
//! - `noexec` on the child's home, `/tmp`, `/var/tmp`, `/dev/shm`, `/run/user` and removable
//!   media: otherwise a child can `mmap` code from a file they wrote without any exec (the
//!   exec guard sees every exec, not every mapping).
//! - `vm.memfd_noexec=2`: otherwise a program can be run from memory (`memfd_create` +
//!   `execveat`), from no filesystem the guard watches. Kernels before 6.3 do not have it.
//! - Unprivileged user namespaces off: inside one a child is root of their own namespace,
//!   which widens what the kernel lets them do (mounts, filesystems of their own).
//! - No child account may use `sudo`: root can stop the agent.

pub mod gather;

pub use gather::gather;

use std::collections::HashMap;

/// One thing the device should be set up with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// What it is, e.g. "noexec on /tmp".
    pub name: String,
    pub ok: bool,
    /// What was found, in a few words ("mounted without noexec", "1", ...).
    pub found: String,
    /// The one line that fixes it (empty when ok).
    pub fix: String,
}

impl Item {
    fn new(name: impl Into<String>, ok: bool, found: impl Into<String>, fix: &str) -> Self {
        Self {
            name: name.into(),
            ok,
            found: found.into(),
            fix: if ok { String::new() } else { fix.to_string() },
        }
    }
}

/// What the checks read from the device.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// Sysctl values by dotted name (`vm.memfd_noexec`); a name the kernel lacks is absent.
    pub sysctl: HashMap<String, String>,
    /// `/etc/sudoers` and every file in `/etc/sudoers.d`.
    pub sudoers: Vec<String>,
    /// `/etc/group`.
    pub group: String,
    /// The children's accounts on this device (names).
    pub children: Vec<String>,
}

/// One mount: where, and its per-mount options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: String,
    pub noexec: bool,
}

/// The mounts in a mount table (`/proc/self/mountinfo`), in order.
pub fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = super::exec_guard::unescape_mount(fields.get(4)?);
            let options = fields.get(5)?;
            Some(Mount {
                point,
                noexec: options.split(',').any(|o| o == "noexec"),
            })
        })
        .collect()
}

/// The mount that holds `path`: the last mounted one whose point is `path` or above it.
fn mount_of<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| {
        m.point == path
            || m.point == "/"
            || path
                .strip_prefix(m.point.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Folders where a child can write files and that must not run them.
const NOEXEC: &[&str] = &["/home", "/tmp", "/var/tmp", "/dev/shm", "/run/user"];
/// Where removable media are mounted.
const MEDIA: &[&str] = &["/media", "/run/media", "/mnt"];

/// Every item, ok or missing.
pub fn evaluate(inputs: &Inputs) -> Vec<Item> {
    let mut items = Vec::new();
    let table = mounts(&inputs.mountinfo);
    for dir in NOEXEC {
        // The folder's own mount, and every mount below it (each child's /run/user/UID).
        let mut holders: Vec<&Mount> = mount_of(&table, dir).into_iter().collect();
        holders.extend(
            table
                .iter()
                .filter(|m| m.point.starts_with(&format!("{dir}/"))),
        );
        let bad: Vec<&str> = holders
            .iter()
            .filter(|m| !m.noexec)
            .map(|m| m.point.as_str())
            .collect();
        let ok = bad.is_empty();
        items.push(Item::new(
            format!("noexec on {dir}"),
            ok,
            if ok {
                "noexec".to_string()
            } else {
                format!("{} mounted without noexec", bad.join(", "))
            },
            &format!(
                "mount {dir} with noexec (an /etc/fstab or systemd mount option: \
                 nosuid,nodev,noexec)"
            ),
        ));
    }
    let media: Vec<&Mount> = table
        .iter()
        .filter(|m| MEDIA.iter().any(|d| m.point.starts_with(&format!("{d}/"))))
        .collect();
    let bad: Vec<&str> = media
        .iter()
        .filter(|m| !m.noexec)
        .map(|m| m.point.as_str())
        .collect();
    items.push(Item::new(
        "noexec on removable media",
        bad.is_empty(),
        if bad.is_empty() {
            format!("{} mounted, all noexec", media.len())
        } else {
            format!("{} mounted without noexec", bad.join(", "))
        },
        "mount removable media noexec (udisks2: [defaults] defaults=noexec,nosuid,nodev in \
         /etc/udisks2/mount_options.conf)",
    ));
    let memfd = inputs.sysctl.get("vm.memfd_noexec").map(|v| v.trim());
    items.push(Item::new(
        "vm.memfd_noexec=2",
        memfd == Some("2"),
        memfd.map_or_else(|| "not in this kernel".to_string(), str::to_string),
        if memfd.is_some() {
            "echo vm.memfd_noexec=2 > /etc/sysctl.d/60-haven.conf && sysctl --system"
        } else {
            "use a kernel of version 6.3 or later, then set vm.memfd_noexec=2"
        },
    ));
    let get = |k: &str| inputs.sysctl.get(k).map(|v| v.trim().to_string());
    let userns_off = get("kernel.unprivileged_userns_clone").as_deref() == Some("0")
        || get("user.max_user_namespaces").as_deref() == Some("0")
        || get("kernel.apparmor_restrict_unprivileged_userns").as_deref() == Some("1");
    items.push(Item::new(
        "unprivileged user namespaces off",
        userns_off,
        if userns_off { "off" } else { "on" },
        "echo kernel.unprivileged_userns_clone=0 > /etc/sysctl.d/60-haven.conf && sysctl --system \
         (or user.max_user_namespaces=0 where that sysctl is missing)",
    ));
    let sudoers = sudo_users(&inputs.sudoers, &inputs.group, &inputs.children);
    items.push(Item::new(
        "no child account can sudo",
        sudoers.is_empty(),
        if sudoers.is_empty() {
            "none can".to_string()
        } else {
            format!("{} can", sudoers.join(", "))
        },
        &format!(
            "remove the child's account from sudo: gpasswd -d {} sudo (and from any rule in \
             /etc/sudoers.d)",
            sudoers.first().map_or("NAME", |s| s.as_str())
        ),
    ));
    items
}

/// The children named in a sudoers rule, directly, through a group (`%sudo`) or `ALL`.
/// Aliases are read as their names only (a `User_Alias` holding a child is missed: a home's
/// devices do not use them); `#include` lines are the other files passed in.
pub fn sudo_users(sudoers: &[String], group: &str, children: &[String]) -> Vec<String> {
    let members: HashMap<&str, Vec<&str>> = group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let users = f.get(3)?.split(',').filter(|u| !u.is_empty()).collect();
            Some((*f.first()?, users))
        })
        .collect();
    let mut out = Vec::new();
    for text in sudoers {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty()
                || (line.starts_with('#') && !line.starts_with("#include"))
                || line.starts_with("Defaults")
                || line.contains("_Alias")
                || line.starts_with('@')
                || line.starts_with("#include")
            {
                continue;
            }
            let Some(users) = line.split_ascii_whitespace().next() else {
                continue;
            };
            for who in users.split(',') {
                for child in children {
                    let named = who == child
                        || who == "ALL"
                        || who.strip_prefix('%').is_some_and(|g| {
                            members.get(g).is_some_and(|m| m.contains(&child.as_str()))
                        });
                    if named && !out.contains(child) {
                        out.push(child.clone());
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// The missing items, or none.
pub fn missing(items: &[Item]) -> Vec<&Item> {
    items.iter().filter(|i| !i.ok).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARDENED: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 8:2 / /home rw,nosuid,nodev,noexec - ext4 /dev/sda2 rw
24 22 0:30 / /tmp rw,nosuid,nodev,noexec - tmpfs tmpfs rw
25 22 0:31 / /var/tmp rw,nosuid,nodev,noexec - tmpfs tmpfs rw
26 22 0:25 / /dev/shm rw,nosuid,nodev,noexec - tmpfs tmpfs rw
27 22 0:26 / /run rw,nosuid,nodev,noexec - tmpfs tmpfs rw
28 27 0:40 / /run/user/1001 rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw
29 22 8:17 / /media/amira/STICK rw,nosuid,nodev,noexec - vfat /dev/sdb1 rw
";

    fn inputs(mountinfo: &str) -> Inputs {
        Inputs {
            mountinfo: mountinfo.into(),
            sysctl: [
                ("vm.memfd_noexec", "2"),
                ("kernel.unprivileged_userns_clone", "0"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            sudoers: vec!["root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n".into()],
            group: "sudo:x:27:carer\nwheel:x:10:\n".into(),
            children: vec!["amira".into()],
        }
    }

    // clause D4, D5
    #[test]
    fn d5_a_hardened_device_has_every_item() {
        let items = evaluate(&inputs(HARDENED));
        assert!(missing(&items).is_empty(), "{items:#?}");
        assert_eq!(items.len(), 9);
        assert!(items.iter().all(|i| i.fix.is_empty()));
    }

    // clause D4, D5: each missing item is reported with its fix.
    #[test]
    fn d5_each_missing_item_is_reported_with_the_line_that_fixes_it() {
        let plain = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 22 0:25 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw
28 22 0:40 / /run/user/1001 rw,nosuid,nodev,relatime - tmpfs tmpfs rw
29 22 8:17 / /media/amira/My\\040Stick rw,nosuid,nodev - vfat /dev/sdb1 rw
";
        let mut i = inputs(plain);
        i.sysctl.clear();
        i.sysctl
            .insert("kernel.unprivileged_userns_clone".into(), "1".into());
        i.group = "sudo:x:27:carer,amira\n".into();
        let items = evaluate(&i);
        let names: Vec<&str> = missing(&items).iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "noexec on /home",
                "noexec on /tmp",
                "noexec on /var/tmp",
                "noexec on /dev/shm",
                "noexec on /run/user",
                "noexec on removable media",
                "vm.memfd_noexec=2",
                "unprivileged user namespaces off",
                "no child account can sudo",
            ]
        );
        let by = |n: &str| items.iter().find(|i| i.name == n).unwrap().clone();
        assert_eq!(by("noexec on /home").found, "/ mounted without noexec");
        assert_eq!(
            by("noexec on removable media").found,
            "/media/amira/My Stick mounted without noexec"
        );
        assert_eq!(by("vm.memfd_noexec=2").found, "not in this kernel");
        assert!(by("vm.memfd_noexec=2").fix.contains("6.3"));
        assert!(
            by("no child account can sudo")
                .fix
                .contains("gpasswd -d amira sudo")
        );
        assert!(missing(&items).iter().all(|i| !i.fix.is_empty()));
    }

    #[test]
    fn d5_sudo_is_found_by_name_group_or_all_and_comments_are_ignored() {
        let children = vec!["amira".to_string(), "ben".to_string()];
        let group = "wheel:x:10:ben\nsudo:x:27:\n";
        let sudoers = vec![
            "# amira ALL=(ALL) ALL\nDefaults env_reset\n%wheel ALL=(ALL) ALL\n".to_string(),
            "amira,carer ALL=(ALL) NOPASSWD: /usr/bin/apt\n".to_string(),
        ];
        assert_eq!(sudo_users(&sudoers, group, &children), children);
        assert!(sudo_users(&["ALL ALL=(ALL) ALL".into()], "", &[]).is_empty());
        assert_eq!(
            sudo_users(&["ALL ALL=(ALL) ALL".into()], "", &children[..1]),
            vec!["amira".to_string()]
        );
        // A later, deeper mount of the same folder wins.
        let table = mounts(
            "1 0 8:1 / / rw - ext4 x rw\n2 1 0:1 / /tmp rw - tmpfs t rw\n3 1 0:2 / /tmp rw,noexec - tmpfs t rw\n",
        );
        assert!(mount_of(&table, "/tmp").is_some_and(|m| m.noexec));
        assert!(mount_of(&table, "/tmpx").is_some_and(|m| m.point == "/"));
    }
}
