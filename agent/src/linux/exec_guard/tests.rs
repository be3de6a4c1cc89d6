//! The exec guard against a child who tries. Each bypass test needs root: it mounts a tmpfs
//! of its own (the only filesystem the guard watches, so nothing else on the machine is
//! touched), runs programs as a throwaway child uid set in the forked child (no account is
//! added anywhere), and unmounts it at the end.

use super::*;
use crate::report::MemorySink;
use haven_proto::agent::v1::{AppDefault, AppRule};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! needs_root {
    ($name:literal) => {
        if !is_root() {
            eprintln!(concat!("SKIPPED ", $name, ": needs root"));
            return;
        }
    };
}

/// A tmpfs mounted on a temporary folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = std::ffi::CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"haven-test".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"mode=0755,size=64m".as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", io::Error::last_os_error());
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: target is a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A device in miniature: a trusted folder (root's) and a child's home, on one tmpfs.
struct Device {
    fs: Tmpfs,
    uid: u32,
}

impl Device {
    fn new(offset: u32) -> Self {
        let fs = Tmpfs::mount();
        let uid = 40_000 + (std::process::id() % 5_000) * 4 + offset;
        let d = Self { fs, uid };
        std::fs::create_dir(d.trusted()).unwrap();
        std::fs::create_dir(d.home()).unwrap();
        chown(d.home(), Some(uid), Some(uid)).unwrap();
        d
    }

    fn trusted(&self) -> PathBuf {
        self.fs.path().join("usr")
    }

    fn home(&self) -> PathBuf {
        self.fs.path().join("home")
    }

    /// Copies `from` to `to` (plus `extra` bytes, which makes its content its own), mode
    /// 0755, owned by the child when it is in their home.
    fn install(&self, from: &str, to: &Path, extra: &[u8]) -> PathBuf {
        let mut bytes = std::fs::read(from).unwrap();
        bytes.extend_from_slice(extra);
        self.write(to, &bytes)
    }

    fn write(&self, to: &Path, bytes: &[u8]) -> PathBuf {
        std::fs::write(to, bytes).unwrap();
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
        if to.starts_with(self.home()) {
            chown(to, Some(self.uid), Some(self.uid)).unwrap();
        }
        to.to_path_buf()
    }

    fn guard(&self, sink: Arc<MemorySink>) -> ExecGuard {
        let fs = self.fs.path().to_path_buf();
        ExecGuard::start(
            ExecGuardConfig {
                exec_filesystems: vec![fs.clone()],
                library_filesystems: vec![fs],
                trust: Trust {
                    roots: vec![self.trusted()],
                    bin_dirs: vec![self.trusted()],
                    ..Trust::default()
                },
                always_allowed: Vec::new(),
                refresh_every: Duration::from_secs(3600),
                check_hardening: false,
            },
            sink,
        )
        .unwrap()
    }

    /// Runs `prog` as the child: uid and gid set in the forked child before exec.
    fn run_as_child(&self, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> io::Result<Output> {
        Command::new(prog)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .current_dir("/")
            .uid(self.uid)
            .gid(self.uid)
            .output()
    }
}

fn policy(default: AppDefault, allowed: &[&Path], blocked: &[&Path]) -> DevicePolicy {
    let list = |v: &[&Path]| v.iter().map(|p| p.display().to_string()).collect();
    DevicePolicy {
        version: 5,
        apps: Some(AppRule {
            default: default as i32,
            allowed: list(allowed),
            blocked: list(blocked),
        }),
        ..Default::default()
    }
}

fn refused(result: io::Result<Output>) -> bool {
    matches!(result, Err(e) if e.raw_os_error() == Some(libc::EPERM))
}

fn ran(result: io::Result<Output>) -> bool {
    matches!(result, Ok(o) if o.status.success())
}

fn wait_for_records(sink: &MemorySink) -> Vec<Blocked> {
    for _ in 0..500 {
        let records = sink.take();
        if !records.is_empty() {
            return records;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Vec::new()
}

// clause D4: `cp blockedgame /tmp/x && /tmp/x`.
#[test]
fn d4_root_a_renamed_copy_of_a_blocked_program_is_refused_before_it_runs() {
    needs_root!("d4_root_a_renamed_copy_of_a_blocked_program_is_refused_before_it_runs");
    let d = Device::new(0);
    let game = d.install("/bin/true", &d.trusted().join("blockedgame"), b"game one");
    let copy = d.install("/bin/true", &d.home().join(".notes"), b"game one");
    let other = d.install("/bin/true", &d.home().join("homework"), b"not the game");
    let sink = Arc::new(MemorySink::default());
    let mut guard = d.guard(sink.clone());
    // Before any policy, nothing is refused.
    assert!(ran(d.run_as_child(&copy, &[], &[])));
    guard
        .apply(&policy(AppDefault::Allow, &[], &[&game]))
        .unwrap();
    assert!(refused(d.run_as_child(&copy, &[], &[])), "the copy ran");
    assert!(refused(d.run_as_child(&game, &[], &[])), "the game ran");
    assert!(
        ran(d.run_as_child(&other, &[], &[])),
        "another program was refused"
    );
    let records = wait_for_records(&sink);
    assert!(
        records.iter().any(|r| r.subject.ends_with(".notes")
            && r.detail.contains("refused before it ran")
            && r.detail.contains("blocked in the child's plan")),
        "{records:?}"
    );
    // Not a child's account: left to the kill backstop, never refused here.
    assert!(Command::new(&copy).status().unwrap().success());
    assert!(guard.counters().refused.load(Ordering::Relaxed) >= 2);
}

// clause D4: `cp python3 ~/bash && ~/bash` when only allowed apps may run.
#[test]
fn d4_root_python_renamed_to_an_essential_name_is_refused_and_the_real_one_runs() {
    needs_root!("d4_root_python_renamed_to_an_essential_name_is_refused_and_the_real_one_runs");
    let d = Device::new(1);
    let bash = d.install("/bin/bash", &d.trusted().join("bash"), b"");
    let interpreter = ["/usr/bin/python3", "/usr/bin/perl", "/bin/dash"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    let real = std::fs::canonicalize(interpreter).unwrap();
    let fake = d.install(real.to_str().unwrap(), &d.home().join("bash"), b"");
    let sink = Arc::new(MemorySink::default());
    let mut guard = d.guard(sink.clone());
    guard.apply(&policy(AppDefault::Block, &[], &[])).unwrap();
    assert!(
        refused(d.run_as_child(&fake, &["-c", "print(1)"], &[])),
        "the fake bash ran"
    );
    assert!(
        ran(d.run_as_child(&bash, &["-c", "exit 0"], &[])),
        "the real bash was refused"
    );
    let records = wait_for_records(&sink);
    assert!(
        records
            .iter()
            .any(|r| r.detail.contains("only the apps agreed")),
        "{records:?}"
    );
}

// clause D4: a script is as allowed as its interpreter.
#[test]
fn d4_root_a_script_whose_interpreter_is_blocked_is_refused() {
    needs_root!("d4_root_a_script_whose_interpreter_is_blocked_is_refused");
    let d = Device::new(2);
    let python = d.install(
        "/bin/dash",
        &d.trusted().join("python3"),
        b"blocked interpreter",
    );
    let sh = d.install("/bin/dash", &d.trusted().join("sh"), b"");
    let script = d.write(
        &d.home().join("game"),
        format!("#!{}\nexit 0\n", python.display()).as_bytes(),
    );
    let fine = d.write(
        &d.home().join("homework"),
        format!("#!{}\nexit 0\n", sh.display()).as_bytes(),
    );
    let sink = Arc::new(MemorySink::default());
    let mut guard = d.guard(sink.clone());
    guard
        .apply(&policy(AppDefault::Allow, &[], &[&python]))
        .unwrap();
    assert!(refused(d.run_as_child(&script, &[], &[])), "the script ran");
    assert!(
        ran(d.run_as_child(&fine, &[], &[])),
        "a script with an allowed interpreter was refused"
    );
}

// clause D4: `ld.so ./prog` and `LD_PRELOAD=~/x.so`.
#[test]
fn d4_root_the_loader_started_directly_and_an_untrusted_preload_are_refused() {
    needs_root!("d4_root_the_loader_started_directly_and_an_untrusted_preload_are_refused");
    let d = Device::new(3);
    let system_loader = Trust::default()
        .loaders
        .iter()
        .find_map(|l| std::fs::canonicalize(l).ok());
    let Some(system_loader) = system_loader else {
        eprintln!("SKIPPED: no known program loader on this system");
        return;
    };
    let loader = d.install(
        system_loader.to_str().unwrap(),
        &d.trusted().join("ld-linux.so"),
        b"",
    );
    let app = d.install("/bin/true", &d.trusted().join("app"), b"the allowed app");
    let prog = d.install("/bin/true", &d.home().join("prog"), b"the child's own");
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
        "/usr/lib/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let sink = Arc::new(MemorySink::default());
    let mut guard = d.guard(sink.clone());
    // Where anything not blocked may run: the loader may still not be started directly.
    let elsewhere = d.trusted().join("not-installed");
    guard
        .apply(&policy(AppDefault::Allow, &[], &[&elsewhere]))
        .unwrap();
    assert!(ran(d.run_as_child(&prog, &[], &[])));
    let direct = d.run_as_child(&loader, &[prog.to_str().unwrap()], &[]);
    assert!(refused(direct), "ld.so ./prog ran");
    // Only allowed apps: the allowed app runs, a library from the child's folder does not
    // load into it.
    guard
        .apply(&policy(AppDefault::Block, &[&app], &[]))
        .unwrap();
    assert!(
        ran(d.run_as_child(&app, &[], &[])),
        "the allowed app was refused"
    );
    assert!(
        refused(d.run_as_child(&prog, &[], &[])),
        "an unknown program ran"
    );
    if let Some(libm) = libm {
        let preload = d.install(libm, &d.home().join("x.so"), b"");
        let out = d
            .run_as_child(&app, &[], &[("LD_PRELOAD", preload.to_str().unwrap())])
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot be preloaded"), "{stderr}");
        let records = wait_for_records(&sink);
        assert!(
            records.iter().any(|r| r.subject.ends_with("x.so")),
            "{records:?}"
        );
    }
}

#[test]
fn d4_mount_tables_give_one_path_per_real_filesystem() {
    let table = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /proc rw - proc proc rw
24 22 0:30 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw
25 22 8:1 /home /srv/bind rw - ext4 /dev/sda1 rw
26 22 0:31 / /media/my\\040stick rw - vfat /dev/sdb1 rw
";
    assert_eq!(
        parse_mountinfo(table),
        vec![
            PathBuf::from("/"),
            PathBuf::from("/tmp"),
            PathBuf::from("/media/my stick")
        ]
    );
    assert_eq!(unescape_mount("a\\011b\\\\"), "a\tb\\\\");
}
