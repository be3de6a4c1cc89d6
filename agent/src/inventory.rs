//! What the device tells staff about itself: hardware, system and free space.
//!
//! Privacy invariant: an inventory describes the *device*, never what the child does with it.
//! Nothing here reads messages, calls, photos, browsing history or the list of running apps,
//! and nothing that does may ever be added.

use std::fs;
use std::path::Path;

use haven_proto::agent::v1::Inventory;

/// The agent's own version, as reported in `Hello` and every inventory.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Inventory with storage measured on the disk holding `/`.
pub fn collect() -> Inventory {
    collect_for(Path::new("/"))
}

/// Inventory with storage measured on the disk holding `storage_path` (the state folder, so
/// staff see whether the agent itself is about to run out of space).
pub fn collect_for(storage_path: &Path) -> Inventory {
    // sysinfo's static functions read a few small files; a full `System` (with the process
    // list) would cost megabytes of memory for nothing staff need.
    let text = |r: Result<String, sysinfo::Error>| r.unwrap_or_default();
    let (storage_free_bytes, storage_total_bytes) = storage(storage_path).unwrap_or((0, 0));
    Inventory {
        os_name: text(sysinfo::System::name()),
        os_version: text(sysinfo::System::os_version()),
        kernel_version: text(sysinfo::System::kernel_version()),
        model: read_trimmed(Path::new("/sys/class/dmi/id/product_name")).unwrap_or_default(),
        hostname: text(sysinfo::System::host_name()),
        battery_percent: battery_percent(Path::new("/sys/class/power_supply")),
        storage_free_bytes,
        storage_total_bytes,
        memory_total_bytes: memory_total().unwrap_or(0),
        agent_version: AGENT_VERSION.to_string(),
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Mean charge of the batteries under `power_supply` (most devices have one), or `None`
/// for a device without a battery.
fn battery_percent(power_supply: &Path) -> Option<u32> {
    let mut levels = Vec::new();
    for entry in fs::read_dir(power_supply).ok()?.flatten() {
        let dir = entry.path();
        if read_trimmed(&dir.join("type")).as_deref() != Some("Battery") {
            continue;
        }
        if let Some(level) = read_trimmed(&dir.join("capacity")).and_then(|c| c.parse::<u32>().ok())
        {
            levels.push(level.min(100));
        }
    }
    if levels.is_empty() {
        return None;
    }
    Some(levels.iter().sum::<u32>() / levels.len() as u32)
}

/// `(free, total)` bytes of the mounted file system holding `path`: the disk whose mount
/// point is the longest prefix of it.
fn storage(path: &Path) -> Option<(u64, u64)> {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let refresh = sysinfo::DiskRefreshKind::nothing().with_storage();
    let disks = sysinfo::Disks::new_with_refreshed_list_specifics(refresh).ok()?;
    disks
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| (d.available_space(), d.total_space()))
}

/// Total memory from `/proc/meminfo`, read directly: one line, no `System` allocation.
fn memory_total() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&meminfo)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_without_failing() {
        let inv = collect();
        assert_eq!(inv.agent_version, AGENT_VERSION);
        assert!(inv.storage_total_bytes >= inv.storage_free_bytes);
        if Path::new("/proc/meminfo").exists() {
            assert!(inv.memory_total_bytes > 0);
        }
    }

    #[test]
    fn reads_batteries_and_skips_mains() {
        let dir = tempfile::tempdir().unwrap();
        let add = |name: &str, kind: &str, capacity: Option<&str>| {
            let d = dir.path().join(name);
            fs::create_dir(&d).unwrap();
            fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            if let Some(c) = capacity {
                fs::write(d.join("capacity"), c).unwrap();
            }
        };
        add("AC", "Mains", None);
        assert_eq!(battery_percent(dir.path()), None);
        add("BAT0", "Battery", Some("80\n"));
        add("BAT1", "Battery", Some("40"));
        assert_eq!(battery_percent(dir.path()), Some(60));
    }

    #[test]
    fn parses_mem_total() {
        let text = "MemTotal:       16303428 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(16303428 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
    }
}
