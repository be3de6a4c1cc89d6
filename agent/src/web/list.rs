//! Domain lists: reading the common list formats and matching a name against a big list.
//!
//! Filtering providers publish lists of a million names or more, and a child's device is not
//! a server, so a list is held as a sorted compact table of *reversed* names (`moc.koobecaf`)
//! laid end to end in one buffer, with a 4-byte offset and an 8-byte prefix each: about 30 MB
//! for a million names,
//! against hundreds for a set of strings. A query is reversed and each of its suffixes that
//! ends at a dot is looked up by binary search, so `m.facebook.com` matches `facebook.com`
//! while `xfacebook.com` does not.
//!
//! Why not an FST: building one for a million reversed names took seconds (most of it in the
//! builder's node de-duplication), far over the half-second load target, while sorting this
//! table takes a fraction of a second. Loading avoids one heap allocation per name, and the
//! memory used while sorting is given back afterwards.

use std::path::Path;

/// Why a list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read the domain list {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the domain list {path} is too big to load (more than 4 GB)")]
    TooBig { path: String },
    #[error("could not build the domain list: {0}")]
    Build(String),
    #[error("the compiled domain list {what} cannot be used: {source}")]
    Compiled {
        what: String,
        source: haven_proto::domain_list::FormatError,
    },
}

/// What importing a list found: how many names it holds and how many lines were skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Distinct names in the list.
    pub domains: usize,
    /// Lines that were neither a comment, blank nor a usable name (an IP address, a rule
    /// with options, a wildcard, a name with spaces...).
    pub skipped: usize,
}

/// A set of domains, matched by suffix: the reversed names, sorted, end to end in one buffer,
/// with one 4-byte offset each.
#[derive(Clone, Default)]
pub struct DomainSet {
    data: Box<[u8]>,
    /// Start of each name in `data`, plus the end of the last one (empty for an empty set).
    offsets: Box<[u32]>,
    /// The first 8 bytes of each name as a big-endian number: the binary search reads this
    /// one compact array and only looks at the names themselves on a tie, so a lookup costs
    /// about one cache miss per step instead of two and a `memcmp` call.
    prefixes: Box<[u64]>,
}

impl std::fmt::Debug for DomainSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DomainSet({} names)", self.len())
    }
}

use haven_proto::domain_list::{MAX_NAME, prefix_of};

impl DomainSet {
    /// Builds a set from names given in any of the list formats (see [`parse_line`]).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> DomainSet {
        let mut builder = Builder::default();
        for n in names {
            builder.add_line(n.as_bytes());
        }
        builder.finish().0
    }

    /// Reads a list file: a hosts file, one domain a line, or basic adblock rules.
    pub fn load(path: &Path) -> Result<(DomainSet, ImportStats), ListError> {
        let text = std::fs::read(path).map_err(|source| ListError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if u32::try_from(text.len()).is_err() {
            return Err(ListError::TooBig {
                path: path.display().to_string(),
            });
        }
        Ok(Self::parse(&text))
    }

    /// Parses list text (bytes, so a stray invalid UTF-8 line only skips that line).
    pub fn parse(text: &[u8]) -> (DomainSet, ImportStats) {
        let mut builder = Builder::with_capacity(text.len());
        for line in text.split(|&b| b == b'\n') {
            builder.add_line(line);
        }
        builder.finish()
    }

    /// Several sets as one (a category extended by more lists).
    pub fn union(sets: &[&DomainSet]) -> DomainSet {
        let mut builder = Builder::default();
        for s in sets {
            for key in s.keys() {
                builder.push_reversed(key);
            }
        }
        builder.finish().0
    }

    /// Loads a list in the controller's compiled form (already sorted and distinct, so one
    /// pass and no sort); `what` names it in errors.
    pub fn from_compiled(bytes: &[u8], what: &str) -> Result<DomainSet, ListError> {
        let bad = |source| ListError::Compiled {
            what: what.to_string(),
            source,
        };
        let count = haven_proto::domain_list::count(bytes).map_err(bad)?;
        // Never trust a count to size an allocation: the bytes bound how many names there are.
        let cap = count.min(bytes.len());
        let mut data = Vec::with_capacity(bytes.len());
        let mut offsets = Vec::with_capacity(cap + 1);
        let mut prefixes = Vec::with_capacity(cap);
        let mut too_big = false;
        haven_proto::domain_list::for_each_name(bytes, |rev| {
            match u32::try_from(data.len()) {
                Ok(at) => offsets.push(at),
                Err(_) => too_big = true,
            }
            prefixes.push(prefix_of(rev));
            data.extend_from_slice(rev);
        })
        .map_err(bad)?;
        if too_big || u32::try_from(data.len()).is_err() {
            return Err(ListError::TooBig {
                path: what.to_string(),
            });
        }
        if !prefixes.is_empty() {
            offsets.push(data.len() as u32);
        }
        Ok(DomainSet {
            data: data.into_boxed_slice(),
            offsets: offsets.into_boxed_slice(),
            prefixes: prefixes.into_boxed_slice(),
        })
    }

    /// The set in the compiled form (the inverse of [`DomainSet::from_compiled`]).
    pub fn to_compiled(&self) -> Vec<u8> {
        haven_proto::domain_list::encode(self.keys(), self.len())
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the set occupies.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.offsets.len() * 4 + self.prefixes.len() * 8
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn keys(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.key(i))
    }

    /// Whether the reversed name `rev` is listed; `lo` narrows the search: every key sorting
    /// before a shorter prefix of `rev` also sorts before `rev`.
    fn find(&self, rev: &[u8], lo: usize) -> Result<usize, usize> {
        let want = prefix_of(rev);
        let (mut lo, mut hi) = (lo, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let order = self.prefixes[mid]
                .cmp(&want)
                .then_with(|| self.key(mid).cmp(rev));
            match order {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The listed name that `name` falls under (itself or a parent), if any; the shortest
    /// one, so a report names the site (`facebook.com`) rather than the page's host.
    ///
    /// `name` may be in any case and may end with a dot.
    pub fn matching<'n>(&self, name: &'n str) -> Option<&'n str> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_NAME || self.is_empty() {
            return None;
        }
        let mut rev = [0u8; MAX_NAME];
        for (i, &b) in bytes.iter().rev().enumerate() {
            rev[i] = b.to_ascii_lowercase();
        }
        let rev = &rev[..bytes.len()];
        // Try each suffix ending at a dot, shortest first (`moc`, `moc.koobecaf`, ...).
        let mut lo = 0;
        for end in (1..=rev.len()).filter(|&e| e == rev.len() || rev[e] == b'.') {
            match self.find(&rev[..end], lo) {
                Ok(_) => return Some(&name[name.len() - end..]),
                Err(at) => lo = at,
            }
        }
        None
    }

    pub fn contains_suffix_of(&self, name: &str) -> bool {
        self.matching(name).is_some()
    }
}

/// Collects reversed names in one buffer and sorts them through a compact index.
#[derive(Default)]
struct Builder {
    buf: Vec<u8>,
    /// (first 8 bytes as a big-endian number, offset, length): sorting mostly compares the
    /// number, which is much faster than comparing slices.
    index: Vec<(u64, u32, u8)>,
    skipped: usize,
}

impl Builder {
    fn with_capacity(text_len: usize) -> Self {
        Builder {
            buf: Vec::with_capacity(text_len),
            index: Vec::with_capacity(text_len / 16),
            skipped: 0,
        }
    }

    fn add_line(&mut self, line: &[u8]) {
        // Fast path for the usual "one domain a line", without building a `Line`.
        let plain = trim(line);
        if !plain.is_empty()
            && !plain
                .iter()
                .any(|b| b.is_ascii_whitespace() || matches!(b, b'#' | b'!' | b'[' | b'|'))
            && let Some(name) = clean_name(plain)
        {
            self.push(name, true);
            return;
        }
        match parse_line(line) {
            Line::Empty => {}
            Line::Skipped => self.skipped += 1,
            Line::Names(names) => {
                for name in names {
                    self.push(name, true);
                }
            }
        }
    }

    fn push_reversed(&mut self, rev: &[u8]) {
        self.push(rev, false);
    }

    fn push(&mut self, name: &[u8], reverse: bool) {
        let Ok(offset) = u32::try_from(self.buf.len()) else {
            self.skipped += 1;
            return;
        };
        let start = self.buf.len();
        if reverse {
            self.buf
                .extend(name.iter().rev().map(|b| b.to_ascii_lowercase()));
        } else {
            self.buf.extend_from_slice(name);
        }
        let rev = &self.buf[start..];
        // Names are at most 253 bytes, checked by `clean_name`.
        self.index.push((prefix_of(rev), offset, rev.len() as u8));
    }

    fn finish(mut self) -> (DomainSet, ImportStats) {
        let buf = std::mem::take(&mut self.buf);
        let key = |&(_, off, len): &(u64, u32, u8)| &buf[off as usize..off as usize + len as usize];
        self.index
            .sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a).cmp(key(b))));
        let mut data = Vec::with_capacity(buf.len());
        let mut offsets = Vec::with_capacity(self.index.len() + 1);
        let mut prefixes = Vec::with_capacity(self.index.len());
        let mut last: Option<&[u8]> = None;
        for entry in &self.index {
            let k = key(entry);
            if last == Some(k) {
                continue;
            }
            // The buffer holds at most 4 GB (checked when loading), so offsets fit in a u32.
            offsets.push(data.len() as u32);
            prefixes.push(entry.0);
            data.extend_from_slice(k);
            last = Some(k);
        }
        if !offsets.is_empty() {
            offsets.push(data.len() as u32);
        }
        let set = DomainSet {
            data: data.into_boxed_slice(),
            offsets: offsets.into_boxed_slice(),
            prefixes: prefixes.into_boxed_slice(),
        };
        let stats = ImportStats {
            domains: set.len(),
            skipped: self.skipped,
        };
        drop(buf);
        drop(std::mem::take(&mut self.index));
        give_memory_back();
        (set, stats)
    }
}

/// Returns freed heap memory to the system after a big load, so the resident size reflects
/// what the lists keep, not what loading them needed for a moment.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

// The line formats and the compiled form are shared with the controller, which compiles the
// category lists it sends (WB1, WB4).
pub use haven_proto::domain_list::{Line, parse_line};
use haven_proto::domain_list::{clean_name, trim};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wb4_suffix_matching_counts_only_at_a_dot() {
        let set = DomainSet::from_names(["facebook.com", "Example.ORG.", "co.uk"]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.matching("facebook.com"), Some("facebook.com"));
        assert_eq!(set.matching("m.facebook.com"), Some("facebook.com"));
        assert_eq!(set.matching("A.B.FaceBook.com."), Some("FaceBook.com"));
        assert_eq!(set.matching("xfacebook.com"), None);
        assert_eq!(set.matching("facebook.co"), None);
        assert_eq!(set.matching("com"), None);
        assert_eq!(set.matching("www.example.org"), Some("example.org"));
        assert_eq!(set.matching(""), None);
        // The shortest listed suffix is the one reported.
        let set = DomainSet::from_names(["www.bbc.co.uk", "bbc.co.uk"]);
        assert_eq!(set.matching("news.www.bbc.co.uk"), Some("bbc.co.uk"));
    }

    #[test]
    fn lists_in_every_common_format_are_read_and_bad_lines_counted() {
        let text = b"# a comment\n\
            ! adblock comment\n\
            [Adblock Plus 2.0]\n\
            \n\
            plain.example\n\
            Upper.Example.\n\
            0.0.0.0 hosts.example second.example # trailing\n\
            127.0.0.1 localhost\n\
            ::1 ip6-localhost\n\
            ||adblock.example^\n\
            ||withoptions.example^$third-party\n\
            @@||exception.example^\n\
            *.wild.example\n\
            192.168.1.1\n\
            not a domain\n\
            bad..example\n\
            \xff\xfe.example\r\n\
            plain.example\n";
        let (set, stats) = DomainSet::parse(text);
        let mut names: Vec<String> = set
            .keys()
            .map(|k| String::from_utf8(k.iter().rev().copied().collect()).unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "adblock.example",
                "hosts.example",
                "plain.example",
                "second.example",
                "upper.example",
                "wild.example"
            ]
        );
        // localhost, ip6-localhost, options, exception, IP, spaces, empty label, bad bytes.
        assert_eq!(stats.skipped, 8, "{stats:?}");
        assert_eq!(stats.domains, 6);
    }

    // clause WB4: the controller's compiled form loads into the same table as the text.
    #[test]
    fn wb4_compiled_lists_load_without_sorting_and_match_the_same() {
        let c =
            haven_proto::domain_list::compile(b"Facebook.com\nbets.example\n0.0.0.0 x.example\n");
        let set = DomainSet::from_compiled(&c.bytes, "test").unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.matching("m.facebook.com"), Some("facebook.com"));
        assert!(set.contains_suffix_of("www.bets.example"));
        assert!(!set.contains_suffix_of("xfacebook.com"));
        assert_eq!(set.to_compiled(), c.bytes);
        let (text_set, _) = DomainSet::parse(b"facebook.com\nbets.example\nx.example\n");
        assert_eq!(text_set.to_compiled(), c.bytes);
        assert!(DomainSet::from_compiled(b"junk", "test").is_err());
    }

    #[test]
    fn sets_combine() {
        let a = DomainSet::from_names(["a.example"]);
        let b = DomainSet::from_names(["b.example", "a.example"]);
        let u = DomainSet::union(&[&a, &b]);
        assert_eq!(u.len(), 2);
        assert!(u.contains_suffix_of("www.b.example"));
        assert!(DomainSet::default().is_empty());
        assert!(!DomainSet::default().contains_suffix_of("a.example"));
    }
}
