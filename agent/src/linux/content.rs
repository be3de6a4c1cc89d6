//! What a file is: its content (size + SHA-256, cached by device, inode, mtime and ctime and
//! read again when any of them changes), whether it lies in a trusted place, what it needs to
//! run (a script's interpreter, an ELF program's loader), and which files the plan's entries
//! name on this device.
//!
//! A *trusted* file is one the child cannot have put there or changed: under one of the
//! trusted roots (`/usr`, `/opt`, `/bin`, `/sbin`, `/lib*`, flatpak's app folder), owned by
//! root, and neither it nor any folder above it up to the root is writable by anyone but root.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::apps::AppRules;
use crate::apps::exec::{Content, Resolved, TrustedFile};

/// Where trusted programs live, and where names are looked up.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Folders whose root-owned, root-only-writable files are trusted.
    pub roots: Vec<PathBuf>,
    /// Folders a program name is looked up in, in order (like `PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// Where the system's program loaders are (`ld.so ./prog` is refused by their content).
    pub loaders: Vec<PathBuf>,
}

impl Default for Trust {
    fn default() -> Self {
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect();
        Self {
            roots: paths(&[
                "/usr",
                "/opt",
                "/bin",
                "/sbin",
                "/lib",
                "/lib64",
                "/lib32",
                "/libx32",
                "/var/lib/flatpak/app",
                "/var/lib/flatpak/runtime",
            ]),
            bin_dirs: paths(&[
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
                "/usr/games",
                "/usr/libexec",
                "/usr/lib/gdm3",
                "/var/lib/flatpak/exports/bin",
            ]),
            loaders: paths(&[
                "/lib64/ld-linux-x86-64.so.2",
                "/lib/ld-linux-aarch64.so.1",
                "/lib/ld-linux-armhf.so.3",
                "/lib/ld-linux.so.2",
                "/lib/ld-musl-x86_64.so.1",
                "/lib/ld-musl-aarch64.so.1",
            ]),
        }
    }
}

/// Whether `meta` at `path` is trusted (see the module text). Only `stat` is used, never
/// `open`, so the exec guard may call it while a process waits for its answer.
pub fn is_trusted(path: &Path, meta: &std::fs::Metadata, trust: &Trust) -> bool {
    let Some(root) = trust.roots.iter().find(|r| path.starts_with(r)) else {
        return false;
    };
    if !root_only(meta) {
        return false;
    }
    let mut at = path.parent();
    while let Some(dir) = at {
        if !dir.starts_with(root) {
            break;
        }
        match std::fs::metadata(dir) {
            Ok(m) if root_only(&m) => {}
            _ => return false,
        }
        at = dir.parent();
    }
    true
}

/// Owned by root and writable by nobody else.
fn root_only(meta: &std::fs::Metadata) -> bool {
    meta.uid() == 0 && meta.mode() & 0o022 == 0
}

/// What a file needs to run, read from its first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// `#!` script: the interpreter's path as written.
    Script(String),
    /// An ELF file: its loader's path (`PT_INTERP`), if it has one, and whether it is
    /// program code (an executable or shared object, not an object file or core dump).
    Elf {
        interp: Option<String>,
        code: bool,
    },
    Other,
}

const PT_INTERP: u32 = 3;

/// Reads a file's kind from the bytes at its start (`head`, a few KiB) and `read_at` for an
/// ELF loader path that lies further in. Malformed headers give `Other` or no interpreter.
pub fn parse_kind(head: &[u8], read_at: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> FileKind {
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let interp = line.split_ascii_whitespace().next().unwrap_or_default();
        return if interp.is_empty() {
            FileKind::Other
        } else {
            FileKind::Script(interp.to_string())
        };
    }
    if head.get(..4) != Some(b"\x7fELF") {
        return FileKind::Other;
    }
    FileKind::Elf {
        interp: elf_interp(head, read_at),
        code: is_elf_code(head),
    }
}

/// `PT_INTERP` of a little-endian ELF file (64- or 32-bit).
fn elf_interp(head: &[u8], read_at: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<String> {
    let wide = *head.get(4)? == 2;
    if *head.get(5)? != 1 {
        return None; // big-endian: not a system this agent runs on
    }
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let (phoff, phentsize, phnum) = if wide {
        (
            u64_at(head, 0x20)?,
            u16_at(head, 0x36)?,
            u16_at(head, 0x38)?,
        )
    } else {
        (
            u64::from(u32_at(head, 0x1c)?),
            u16_at(head, 0x2a)?,
            u16_at(head, 0x2c)?,
        )
    };
    let (entsize, count) = (usize::from(phentsize), usize::from(phnum.min(64)));
    let table = read_at(phoff, entsize.checked_mul(count)?)?;
    for i in 0..count {
        let ph = table.get(i * entsize..(i + 1) * entsize)?;
        if u32_at(ph, 0)? != PT_INTERP {
            continue;
        }
        let (offset, size) = if wide {
            (u64_at(ph, 8)?, u64_at(ph, 32)?)
        } else {
            (u64::from(u32_at(ph, 4)?), u64::from(u32_at(ph, 16)?))
        };
        let bytes = read_at(offset, usize::try_from(size.min(4096)).ok()?)?;
        let bytes = bytes.split(|&b| b == 0).next()?;
        return Some(String::from_utf8_lossy(bytes).into_owned());
    }
    None
}

/// True when the bytes start an ELF shared object or executable (program code).
pub fn is_elf_code(head: &[u8]) -> bool {
    head.get(..4) == Some(b"\x7fELF") && matches!(head.get(16..18), Some([2 | 3, 0]))
}

/// Content and kind of one file version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub content: Content,
    pub kind: FileKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: u64,
}

fn version(meta: &std::fs::Metadata) -> Version {
    Version {
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        size: meta.size(),
    }
}

/// Files larger than this are not read (a program this big is not a copy a child made of an
/// installed app by accident); their content is unknown, which only ever refuses more.
pub const MAX_HASHED: u64 = 512 * 1024 * 1024;

/// What is remembered of one file version: its kind always, its content once it was needed.
#[derive(Debug, Clone)]
struct Entry {
    version: Version,
    kind: FileKind,
    content: Option<Content>,
}

/// The kinds and contents already read, by (device, inode); an entry is used only while the
/// file's mtime, ctime and size are what they were when it was read.
#[derive(Debug, Default)]
pub struct ContentCache {
    known: Mutex<HashMap<(u64, u64), Entry>>,
}

impl ContentCache {
    fn cached(&self, meta: &std::fs::Metadata) -> Option<Entry> {
        let map = self.known.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(meta.dev(), meta.ino()))
            .filter(|e| e.version == version(meta))
            .cloned()
    }

    fn remember(&self, meta: &std::fs::Metadata, entry: Entry) {
        let mut map = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 16 * 1024 {
            map.clear(); // bounded: a scan of many files must not grow the agent forever
        }
        map.insert((meta.dev(), meta.ino()), entry);
    }

    /// What the open file `file` (metadata `meta`) needs to run, from its first bytes only
    /// (read with `pread`, so the file's offset is untouched).
    pub fn kind(&self, file: &File, meta: &std::fs::Metadata) -> FileKind {
        if let Some(e) = self.cached(meta) {
            return e.kind;
        }
        let kind = read_kind(file);
        self.remember(
            meta,
            Entry {
                version: version(meta),
                kind: kind.clone(),
                content: None,
            },
        );
        kind
    }

    /// The content of the open file, from the cache or read now. `None` when it is too big
    /// or could not be read.
    pub fn content(&self, file: &File, meta: &std::fs::Metadata) -> Option<Content> {
        self.content_within(file, meta, MAX_HASHED)
    }

    /// Like [`ContentCache::content`], reading at most `limit` bytes when it is not cached
    /// (the exec guard's answering thread bounds how long a process waits).
    pub fn content_within(
        &self,
        file: &File,
        meta: &std::fs::Metadata,
        limit: u64,
    ) -> Option<Content> {
        let cached = self.cached(meta);
        if let Some(content) = cached.as_ref().and_then(|e| e.content) {
            return Some(content);
        }
        if meta.size() > limit.min(MAX_HASHED) {
            return None;
        }
        let content = hash(file).ok()?;
        let kind = cached.map_or_else(|| read_kind(file), |e| e.kind);
        self.remember(
            meta,
            Entry {
                version: version(meta),
                kind,
                content: Some(content),
            },
        );
        Some(content)
    }

    /// The content and kind of the file at `path` (opens it: never call from the exec
    /// guard's thread, whose own opens would wait for itself).
    pub fn of_path(&self, path: &Path) -> Option<Known> {
        let file = File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let content = self.content(&file, &meta)?;
        Some(Known {
            content,
            kind: self.kind(&file, &meta),
        })
    }

    /// How many file versions are remembered.
    pub fn len(&self) -> usize {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn read_kind(file: &File) -> FileKind {
    let mut head = vec![0u8; 4096];
    let n = file.read_at(&mut head, 0).unwrap_or(0);
    head.truncate(n);
    let read_at = |offset: u64, len: usize| -> Option<Vec<u8>> {
        let mut b = vec![0u8; len];
        file.read_exact_at(&mut b, offset).ok()?;
        Some(b)
    };
    parse_kind(&head, &read_at)
}

fn hash(file: &File) -> io::Result<Content> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(Content {
        size: at,
        sha256: hasher.finalize().into(),
    })
}

/// The trusted files `entry` names: a full path (its real path, if trusted), or a program
/// name looked up in the trusted program folders.
fn trusted_files(entry: &str, trust: &Trust, cache: &ContentCache) -> Vec<TrustedFile> {
    candidates(entry, trust)
        .into_iter()
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            if !meta.is_file() || !is_trusted(&path, &meta, trust) {
                return None;
            }
            let known = cache.of_path(&path)?;
            Some(TrustedFile {
                path: path.to_string_lossy().into_owned(),
                content: known.content,
            })
        })
        .collect()
}

/// The real paths an entry may name (any owner: blocking looks at every one).
fn candidates(entry: &str, trust: &Trust) -> Vec<PathBuf> {
    let entry = entry.trim();
    let named: Vec<PathBuf> = if entry.contains('/') {
        vec![PathBuf::from(entry)]
    } else if entry.is_empty() || entry == "." || entry == ".." {
        Vec::new()
    } else {
        trust.bin_dirs.iter().map(|d| d.join(entry)).collect()
    };
    let mut out: Vec<PathBuf> = named
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The trusted real paths of the session essentials and the installer's additions, for the
/// kill backstop ([`AppRules::from_policy`]'s `always_allowed`).
pub fn essential_paths(names: &[String], trust: &Trust) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        for path in candidates(name, trust) {
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
                && is_trusted(&path, &meta, trust)
            {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The files the rules' entries name on this device, with their contents. `essentials` are
/// names or paths of programs that must always be allowed.
pub fn resolve(
    rules: &AppRules,
    essentials: &[String],
    trust: &Trust,
    cache: &ContentCache,
) -> Resolved {
    let mut resolved = Resolved::default();
    for entry in rules.allowed_entries() {
        resolved.allowed.extend(trusted_files(entry, trust, cache));
    }
    if rules.only_allowed() {
        for entry in essentials {
            resolved.allowed.extend(trusted_files(entry, trust, cache));
        }
    }
    for entry in rules.blocked_entries() {
        for path in candidates(entry, trust) {
            if let Some(known) = cache.of_path(&path) {
                resolved.blocked.push(known.content);
            }
        }
    }
    for loader in &trust.loaders {
        if let Ok(path) = std::fs::canonicalize(loader)
            && let Some(known) = cache.of_path(&path)
        {
            resolved.loaders.push(known.content);
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_read(_: u64, _: usize) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn d4_a_scripts_interpreter_and_an_elf_programs_loader_are_read() {
        assert_eq!(
            parse_kind(b"#!/usr/bin/python3 -u\nprint()", &no_read),
            FileKind::Script("/usr/bin/python3".into())
        );
        assert_eq!(
            parse_kind(b"#! /bin/sh\n", &no_read),
            FileKind::Script("/bin/sh".into())
        );
        assert_eq!(parse_kind(b"#!\n", &no_read), FileKind::Other);
        assert_eq!(parse_kind(b"hello", &no_read), FileKind::Other);
        // A real program: /bin/sh is dynamically linked on every system these tests run on.
        let file = File::open("/bin/sh").unwrap();
        match read_kind(&file) {
            FileKind::Elf {
                interp: Some(p),
                code: true,
            } => assert!(p.contains("ld-"), "{p}"),
            other => panic!("{other:?}"),
        }
        assert!(is_elf_code(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0"));
        assert!(!is_elf_code(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x01\0"));
        assert!(!is_elf_code(b"#!/bin/sh"));
        // A truncated ELF header has no loader rather than a panic.
        assert_eq!(
            parse_kind(b"\x7fELF\x02\x01", &no_read),
            FileKind::Elf {
                interp: None,
                code: false
            }
        );
    }

    #[test]
    fn d4_content_is_cached_by_inode_and_read_again_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::write(&path, b"one").unwrap();
        let cache = ContentCache::default();
        let first = cache.of_path(&path).unwrap();
        assert_eq!(first.content.size, 3);
        assert_eq!(cache.of_path(&path).unwrap(), first);
        assert_eq!(cache.len(), 1);
        std::fs::write(&path, b"two!").unwrap();
        let second = cache.of_path(&path).unwrap();
        assert_ne!(second.content, first.content);
        assert_eq!(second.content.size, 4);
    }

    #[test]
    fn d4_only_root_owned_files_under_a_trusted_root_are_trusted() {
        let trust = Trust::default();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let meta = std::fs::metadata(&sh).unwrap();
        assert!(is_trusted(&sh, &meta, &trust), "{}", sh.display());
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("sh");
        std::fs::write(&mine, b"x").unwrap();
        let meta = std::fs::metadata(&mine).unwrap();
        assert!(!is_trusted(&mine, &meta, &trust));
        // A trusted root of a folder the child could write to is still not trusted.
        let lax = Trust {
            roots: vec![PathBuf::from("/tmp")],
            ..Trust::default()
        };
        let tmp = std::fs::metadata("/tmp").unwrap();
        assert!(!is_trusted(Path::new("/tmp"), &tmp, &lax));
        assert!(!essential_paths(&["sh".into()], &trust).is_empty());
        assert!(essential_paths(&["no-such-program-here".into()], &trust).is_empty());
    }
}
