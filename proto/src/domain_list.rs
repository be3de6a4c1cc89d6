//! Domain lists as both sides read them, and the compiled form the controller sends devices.
//!
//! Reading: one line of a list in any of the common formats ([`parse_line`]): one domain a
//! line (the UT1 `domains` files), hosts files, basic adblock rules.
//!
//! The compiled form (WB1, WB4) is what a category list is stored and sent as: every name
//! lower-cased and *reversed* (`moc.koobecaf`, so a site and its subdomains sort together),
//! sorted, de-duplicated and front-coded — each name is written as how many bytes it shares
//! with the one before and the rest. It is canonical (one list, one byte string, so its
//! SHA-256 names a version), about half the size of the plain text, and the agent loads it
//! into its suffix table in one pass without sorting.
//!
//! ```text
//! list   = "HVL1" varint(count) { varint(shared) varint(rest_len) rest }*
//! change = "HVD1" varint(len(removed)) removed:list added:list
//! ```

use sha2::{Digest, Sha256};

/// The longest a name can be (RFC 1035).
pub const MAX_NAME: usize = 253;

const LIST_MAGIC: &[u8; 4] = b"HVL1";
const CHANGE_MAGIC: &[u8; 4] = b"HVD1";

/// Why compiled bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a compiled domain list (wrong header)")]
    Header,
    #[error("the compiled domain list is cut short")]
    Truncated,
    #[error("the compiled domain list is out of order at name {0}")]
    Order(usize),
    #[error("the compiled domain list has a name longer than 253 bytes at name {0}")]
    TooLong(usize),
    #[error("the compiled domain list has {0} bytes after its last name")]
    Trailing(usize),
}

/// What one line of a list holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank or a comment.
    Empty,
    /// Not something we can use; counted, never guessed at.
    Skipped,
    /// One or more names (a hosts line may list several), trimmed, without a trailing dot.
    Names(Vec<&'a [u8]>),
}

/// Names a hosts file maps that are the machine itself, never sites.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Reads one line in any of the supported formats:
/// - one domain a line: `example.com` (a leading `*.` or `.` is accepted: it is a suffix match
///   anyway);
/// - hosts files: `0.0.0.0 example.com other.example` (the address is ignored);
/// - basic adblock rules: `||example.com^` (rules with options after `$`, exceptions `@@`,
///   paths and wildcards are skipped: they say more than "this site").
///
/// Comments start with `#` or `!`; `[Adblock Plus 2.0]` headers are ignored.
pub fn parse_line(line: &[u8]) -> Line<'_> {
    let line = trim(line);
    if line.is_empty() || line[0] == b'#' || line[0] == b'!' || line[0] == b'[' {
        return Line::Empty;
    }
    // Drop a trailing comment (`example.com # tracker`).
    let line = match line.iter().position(|&b| b == b'#') {
        Some(i) => trim(&line[..i]),
        None => line,
    };
    if let Some(rule) = line.strip_prefix(b"||") {
        let rule = rule.strip_suffix(b"^").unwrap_or(rule);
        return match clean_name(rule) {
            Some(n) => Line::Names(vec![n]),
            None => Line::Skipped,
        };
    }
    let mut fields = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let Some(first) = fields.next() else {
        return Line::Empty;
    };
    let rest: Vec<&[u8]> = fields.collect();
    if rest.is_empty() {
        return match clean_name(first) {
            Some(n) => Line::Names(vec![n]),
            None => Line::Skipped,
        };
    }
    // A hosts line: an address, then names.
    if !looks_like_address(first) {
        return Line::Skipped;
    }
    let names: Vec<&[u8]> = rest
        .into_iter()
        .filter_map(clean_name)
        .filter(|n| {
            !HOSTS_BOILERPLATE
                .iter()
                .any(|b| b.as_bytes().eq_ignore_ascii_case(n))
        })
        .collect();
    if names.is_empty() {
        Line::Skipped
    } else {
        Line::Names(names)
    }
}

/// Calls `name` for each name on one line; returns `false` when the line was skipped (not
/// blank or a comment, but nothing usable). The usual "one domain a line" takes a fast path.
pub fn names_in_line(line: &[u8], mut name: impl FnMut(&[u8])) -> bool {
    let plain = trim(line);
    if !plain.is_empty()
        && !plain
            .iter()
            .any(|b| b.is_ascii_whitespace() || matches!(b, b'#' | b'!' | b'[' | b'|'))
        && let Some(n) = clean_name(plain)
    {
        name(n);
        return true;
    }
    match parse_line(line) {
        Line::Empty => true,
        Line::Skipped => false,
        Line::Names(names) => {
            names.into_iter().for_each(name);
            true
        }
    }
}

/// Trims ASCII white space and a UTF-8 byte-order mark.
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() || *first == 0xEF || *first == 0xBB || *first == 0xBF {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn looks_like_address(s: &[u8]) -> bool {
    s.iter()
        .all(|b| b.is_ascii_hexdigit() || *b == b'.' || *b == b':')
        && s.iter().any(|b| *b == b'.' || *b == b':')
}

/// A usable domain name, or `None`: letters, digits, `-` and `_` in labels of 1 to 63
/// characters, at most 253 in all, not an IP address.
pub fn clean_name(s: &[u8]) -> Option<&[u8]> {
    let s = s
        .strip_prefix(b"*.")
        .or_else(|| s.strip_prefix(b"."))
        .unwrap_or(s);
    let s = s.strip_suffix(b".").unwrap_or(s);
    if s.is_empty() || s.len() > MAX_NAME {
        return None;
    }
    let mut all_numeric = true;
    for label in s.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        all_numeric &= label.iter().all(u8::is_ascii_digit);
    }
    if all_numeric {
        return None; // an IPv4 address
    }
    Some(s)
}

/// A list compiled from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub bytes: Vec<u8>,
    /// Distinct names.
    pub domains: usize,
    /// Lines that were not usable names.
    pub skipped: usize,
}

/// Compiles list text (bytes, so a stray invalid UTF-8 line only skips that line).
pub fn compile(text: &[u8]) -> Compiled {
    let mut buf: Vec<u8> = Vec::with_capacity(text.len());
    let mut index: Vec<(u64, u32, u8)> = Vec::with_capacity(text.len() / 16);
    let mut skipped = 0;
    for line in text.split(|&b| b == b'\n') {
        let ok = names_in_line(line, |name| {
            let Ok(offset) = u32::try_from(buf.len()) else {
                return;
            };
            let start = buf.len();
            buf.extend(name.iter().rev().map(u8::to_ascii_lowercase));
            // `clean_name` keeps names to 253 bytes.
            index.push((prefix_of(&buf[start..]), offset, name.len() as u8));
        });
        if !ok {
            skipped += 1;
        }
    }
    let key = |&(_, off, len): &(u64, u32, u8)| &buf[off as usize..off as usize + len as usize];
    index.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a).cmp(key(b))));
    index.dedup_by(|a, b| key(a) == key(b));
    let bytes = encode(index.iter().map(key), index.len());
    Compiled {
        bytes,
        domains: index.len(),
        skipped,
    }
}

/// The first 8 bytes of a (reversed) name, zero-padded, as a number that sorts like the bytes.
pub fn prefix_of(rev: &[u8]) -> u64 {
    let mut prefix = [0u8; 8];
    let n = rev.len().min(8);
    prefix[..n].copy_from_slice(&rev[..n]);
    u64::from_be_bytes(prefix)
}

/// Encodes reversed names that are already sorted and distinct.
pub fn encode<'a>(sorted: impl IntoIterator<Item = &'a [u8]>, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + count * 12);
    out.extend_from_slice(LIST_MAGIC);
    put_varint(&mut out, count as u64);
    let mut prev: &[u8] = &[];
    for name in sorted {
        let shared = prev.iter().zip(name).take_while(|(a, b)| a == b).count();
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, (name.len() - shared) as u64);
        out.extend_from_slice(&name[shared..]);
        prev = name;
    }
    out
}

/// Calls `each` with every reversed name of a compiled list, in order; checks the order and
/// lengths on the way. Returns how many names there were.
pub fn for_each_name(bytes: &[u8], mut each: impl FnMut(&[u8])) -> Result<usize, FormatError> {
    let mut r = Reader::new(bytes, LIST_MAGIC)?;
    let count = r.varint()? as usize;
    let mut name: Vec<u8> = Vec::with_capacity(MAX_NAME);
    for i in 0..count {
        let shared = r.varint()? as usize;
        let rest = r.varint()? as usize;
        if shared > name.len() {
            return Err(FormatError::Order(i));
        }
        if shared + rest > MAX_NAME {
            return Err(FormatError::TooLong(i));
        }
        let tail = r.take(rest)?;
        // Strictly ascending: the new name must sort after the previous one.
        let order = tail.cmp(&name[shared..]);
        if i > 0 && (order != std::cmp::Ordering::Greater || (rest == 0)) {
            return Err(FormatError::Order(i));
        }
        name.truncate(shared);
        name.extend_from_slice(tail);
        if name.is_empty() {
            return Err(FormatError::Order(i));
        }
        each(&name);
    }
    if r.rest() != 0 {
        return Err(FormatError::Trailing(r.rest()));
    }
    Ok(count)
}

/// How many names a compiled list holds (read from its header).
pub fn count(bytes: &[u8]) -> Result<usize, FormatError> {
    Ok(Reader::new(bytes, LIST_MAGIC)?.varint()? as usize)
}

/// Every reversed name of a compiled list.
pub fn names(bytes: &[u8]) -> Result<Vec<Vec<u8>>, FormatError> {
    let mut v = Vec::new();
    for_each_name(bytes, |n| v.push(n.to_vec()))?;
    Ok(v)
}

/// The names of a compiled list laid end to end in one buffer, with where each starts (and
/// the end of the last): one allocation for a million names, not a million.
struct Flat {
    data: Vec<u8>,
    starts: Vec<usize>,
}

impl Flat {
    fn of(bytes: &[u8]) -> Result<Flat, FormatError> {
        let cap = count(bytes)?.min(bytes.len());
        let mut flat = Flat {
            data: Vec::with_capacity(bytes.len() * 2),
            starts: Vec::with_capacity(cap + 1),
        };
        for_each_name(bytes, |n| {
            flat.starts.push(flat.data.len());
            flat.data.extend_from_slice(n);
        })?;
        flat.starts.push(flat.data.len());
        Ok(flat)
    }

    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.len()).then(|| &self.data[self.starts[i]..self.starts[i + 1]])
    }
}

/// The SHA-256 of compiled bytes, in hex: the name of a list version.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The change from compiled list `old` to `new`: the names removed, then the names added.
pub fn diff(old: &[u8], new: &[u8]) -> Result<Vec<u8>, FormatError> {
    let (old, new) = (Flat::of(old)?, Flat::of(new)?);
    let (mut removed, mut added): (Vec<&[u8]>, Vec<&[u8]>) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(a);
                i += 1;
            }
            (Some(_), Some(b)) | (None, Some(b)) => {
                added.push(b);
                j += 1;
            }
            (Some(a), None) => {
                removed.push(a);
                i += 1;
            }
            (None, None) => break,
        }
    }
    let removed = encode(removed.iter().copied(), removed.len());
    let added = encode(added.iter().copied(), added.len());
    let mut out = Vec::with_capacity(8 + removed.len() + added.len());
    out.extend_from_slice(CHANGE_MAGIC);
    put_varint(&mut out, removed.len() as u64);
    out.extend_from_slice(&removed);
    out.extend_from_slice(&added);
    Ok(out)
}

/// The compiled list `base` with `change` (from [`diff`]) applied.
pub fn apply(base: &[u8], change: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut r = Reader::new(change, CHANGE_MAGIC)?;
    let removed_len = r.varint()? as usize;
    let removed = Flat::of(r.take(removed_len)?)?;
    let added = Flat::of(r.take(r.rest())?)?;
    let base = Flat::of(base)?;
    let mut out: Vec<&[u8]> = Vec::with_capacity(base.len() + added.len());
    let (mut i, mut j, mut k) = (0, 0, 0);
    loop {
        let (b, a) = (base.get(i), added.get(k));
        let next_base = match (b, a) {
            (None, None) => break,
            (Some(b), Some(a)) if b < a => Some(b),
            (Some(b), None) => Some(b),
            _ => None,
        };
        if let Some(b) = next_base {
            while removed.get(j).is_some_and(|r| r < b) {
                j += 1;
            }
            if removed.get(j) != Some(b) {
                out.push(b);
            }
            i += 1;
        } else if let Some(a) = a {
            if b == Some(a) {
                i += 1; // already there: keep one
            }
            out.push(a);
            k += 1;
        }
    }
    Ok(encode(out.iter().copied(), out.len()))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], magic: &[u8; 4]) -> Result<Self, FormatError> {
        if bytes.len() < 4 || &bytes[..4] != magic {
            return Err(FormatError::Header);
        }
        Ok(Reader { bytes, at: 4 })
    }

    fn varint(&mut self) -> Result<u64, FormatError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at).ok_or(FormatError::Truncated)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FormatError::Truncated)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n).ok_or(FormatError::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(FormatError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn rest(&self) -> usize {
        self.bytes.len() - self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(bytes: &[u8]) -> Vec<String> {
        names(bytes)
            .unwrap()
            .into_iter()
            .map(|n| String::from_utf8(n.into_iter().rev().collect()).unwrap())
            .collect()
    }

    #[test]
    fn compiling_normalises_sorts_and_counts_what_it_skipped() {
        let c =
            compile(b"B.example\n# c\n0.0.0.0 a.example\n||c.example^\nnot a name\na.example.\n");
        assert_eq!(c.domains, 3);
        assert_eq!(c.skipped, 1);
        assert_eq!(plain(&c.bytes), ["a.example", "b.example", "c.example"]);
        // Canonical: the same names in another order or spelling compile to the same bytes.
        assert_eq!(compile(b"c.example\nA.EXAMPLE\nb.example\n").bytes, c.bytes);
        assert_eq!(count(&c.bytes).unwrap(), 3);
    }

    #[test]
    fn a_change_carries_only_what_changed_and_applies_to_the_same_bytes() {
        let text: String = (0..2000).map(|i| format!("site{i}.example\n")).collect();
        let old = compile(text.as_bytes()).bytes;
        let new = compile(
            format!("{text}added.example\n")
                .replace("site7.example\n", "")
                .as_bytes(),
        )
        .bytes;
        let change = diff(&old, &new).unwrap();
        assert!(change.len() < 64, "{} bytes", change.len());
        assert_eq!(apply(&old, &change).unwrap(), new);
        assert_eq!(apply(&new, &diff(&new, &old).unwrap()).unwrap(), old);
        assert_eq!(apply(&old, &diff(&old, &old).unwrap()).unwrap(), old);
    }

    #[test]
    fn damaged_bytes_are_refused_not_trusted() {
        let good = compile(b"a.example\nb.example\n").bytes;
        assert_eq!(for_each_name(b"XXXX", |_| {}), Err(FormatError::Header));
        assert_eq!(
            for_each_name(&good[..good.len() - 1], |_| {}),
            Err(FormatError::Truncated)
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            for_each_name(&trailing, |_| {}),
            Err(FormatError::Trailing(1))
        );
        // Two names out of order.
        let bad = encode([b"b".as_slice(), b"a".as_slice()], 2);
        assert!(matches!(
            for_each_name(&bad, |_| {}),
            Err(FormatError::Order(1))
        ));
        let dup = encode([b"a".as_slice(), b"a".as_slice()], 2);
        assert!(for_each_name(&dup, |_| {}).is_err());
    }
}
