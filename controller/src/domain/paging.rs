//! Page tokens for lists that can grow: how big a page is, and the opaque, versioned token
//! that says where the next page starts (a keyset cursor: the sort key of the last row sent)
//! and which filters it belongs to. Pure: the store seeks past the key, the service encodes
//! and checks the token, and neither needs to know the token's layout.
//!
//! A token is URL-safe base64 (no padding) of
//! `[version = 1][8 bytes: SHA-256 of the list's name and filters][key parts]`, each key part
//! `0x01` + an i64 big-endian, or `0x02` + a u16 big-endian length + that many UTF-8 bytes.
//! The filter hash is not a secret: it only makes sure a token is used with the list and the
//! filters it was given for, so a changed filter is refused instead of silently skipping rows.
//! A hand-made token can only move the start of a page; the filters and the caller's homes are
//! applied to every page as to the first.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The layout of the token; a new layout gets a new number and old tokens are refused.
const VERSION: u8 = 1;
/// Bytes of the filter hash kept in a token: enough to tell filters apart, short enough to
/// keep tokens short.
const HASH_LEN: usize = 8;
/// Longer than any token this controller gives out; anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = 2048;
const TAG_INT: u8 = 1;
const TAG_TEXT: u8 = 2;

/// One part of a sort key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    Int(i64),
    Text(String),
}

/// A value that can be one part of a sort key.
pub trait KeyValue: Sized {
    fn to_part(&self) -> KeyPart;
    fn from_part(part: &KeyPart) -> Option<Self>;
}

impl KeyValue for i64 {
    fn to_part(&self) -> KeyPart {
        KeyPart::Int(*self)
    }
    fn from_part(part: &KeyPart) -> Option<Self> {
        match part {
            KeyPart::Int(n) => Some(*n),
            KeyPart::Text(_) => None,
        }
    }
}

impl KeyValue for String {
    fn to_part(&self) -> KeyPart {
        KeyPart::Text(self.clone())
    }
    fn from_part(part: &KeyPart) -> Option<Self> {
        match part {
            KeyPart::Text(s) => Some(s.clone()),
            KeyPart::Int(_) => None,
        }
    }
}

/// A whole sort key: a tuple of key values, unique in its list, so "after this key" never
/// skips or repeats a row.
pub trait SeekKey: Sized {
    fn to_parts(&self) -> Vec<KeyPart>;
    /// `None` when the parts do not have this key's shape (a token from elsewhere).
    fn from_parts(parts: &[KeyPart]) -> Option<Self>;
}

impl<A: KeyValue> SeekKey for (A,) {
    fn to_parts(&self) -> Vec<KeyPart> {
        vec![self.0.to_part()]
    }
    fn from_parts(parts: &[KeyPart]) -> Option<Self> {
        match parts {
            [a] => Some((A::from_part(a)?,)),
            _ => None,
        }
    }
}

impl<A: KeyValue, B: KeyValue> SeekKey for (A, B) {
    fn to_parts(&self) -> Vec<KeyPart> {
        vec![self.0.to_part(), self.1.to_part()]
    }
    fn from_parts(parts: &[KeyPart]) -> Option<Self> {
        match parts {
            [a, b] => Some((A::from_part(a)?, B::from_part(b)?)),
            _ => None,
        }
    }
}

impl<A: KeyValue, B: KeyValue, C: KeyValue> SeekKey for (A, B, C) {
    fn to_parts(&self) -> Vec<KeyPart> {
        vec![self.0.to_part(), self.1.to_part(), self.2.to_part()]
    }
    fn from_parts(parts: &[KeyPart]) -> Option<Self> {
        match parts {
            [a, b, c] => Some((A::from_part(a)?, B::from_part(b)?, C::from_part(c)?)),
            _ => None,
        }
    }
}

impl<A: KeyValue, B: KeyValue, C: KeyValue, D: KeyValue> SeekKey for (A, B, C, D) {
    fn to_parts(&self) -> Vec<KeyPart> {
        vec![
            self.0.to_part(),
            self.1.to_part(),
            self.2.to_part(),
            self.3.to_part(),
        ]
    }
    fn from_parts(parts: &[KeyPart]) -> Option<Self> {
        match parts {
            [a, b, c, d] => Some((
                A::from_part(a)?,
                B::from_part(b)?,
                C::from_part(c)?,
                D::from_part(d)?,
            )),
            _ => None,
        }
    }
}

/// What a page request asks the store for: rows after `after` (from the start when `None`),
/// at most `size` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<K> {
    pub after: Option<K>,
    pub size: u32,
}

impl<K> Page<K> {
    /// The first page of `size` rows.
    pub fn first(size: u32) -> Self {
        Page { after: None, size }
    }
}

/// One page of a list and, when more rows follow, the key of its last row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paged<T, K> {
    pub items: Vec<T>,
    pub next: Option<K>,
}

impl<T, K> Paged<T, K> {
    /// A page from rows fetched with one more than the page size: the extra row only says that
    /// more follow, and the key of the last row kept is where the next page starts.
    pub fn from_fetched(mut rows: Vec<T>, size: u32, key: impl Fn(&T) -> K) -> Self {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let next = if rows.len() > size {
            rows.truncate(size);
            rows.last().map(&key)
        } else {
            None
        };
        Paged { items: rows, next }
    }

    /// The page after `page.after` of a list already in memory and sorted by `key` ascending
    /// (for lists put together from several sources, whose order only exists once merged).
    /// Still a seek, not an offset: rows added before the cursor never shift the next page.
    pub fn seek_sorted(rows: Vec<T>, page: &Page<K>, key: impl Fn(&T) -> K) -> Self
    where
        K: Ord,
    {
        let rows: Vec<T> = match &page.after {
            Some(after) => rows.into_iter().filter(|r| key(r) > *after).collect(),
            None => rows,
        };
        let take = usize::try_from(page.size)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let rows = rows.into_iter().take(take).collect();
        Paged::from_fetched(rows, page.size, key)
    }
}

/// How many rows a list sends when the caller asks for none in particular, and the most it
/// sends in one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimits {
    pub default: u32,
    pub max: u32,
}

impl PageLimits {
    /// The page size to use: `page_size` when given, else the older `limit` field (kept for
    /// clients written before page tokens), else the default; never more than the maximum.
    pub fn size(self, page_size: u32, legacy_limit: u32) -> u32 {
        let asked = if page_size != 0 {
            page_size
        } else {
            legacy_limit
        };
        match asked {
            0 => self.default,
            n => n.min(self.max),
        }
    }
}

/// Lists that used to send everything: a default big enough that a client written before
/// page tokens still sees a whole home's list in one answer.
pub const WHOLE_LIST: PageLimits = PageLimits {
    default: 500,
    max: 1000,
};

/// The list a token belongs to and the filters it was given with. Filters are added by name
/// in a fixed order by the caller, with the values as resolved (ids, not names), so the same
/// question asked two ways gets the same hash.
#[derive(Clone, Debug)]
pub struct Filters {
    hasher: Sha256,
}

impl Filters {
    pub fn new(list: &str) -> Self {
        let mut f = Filters {
            hasher: Sha256::new(),
        };
        f.add(list.as_bytes());
        f
    }

    /// Adds one filter; `None` and an empty string are different (not set / set to nothing).
    pub fn with(mut self, name: &str, value: Option<&str>) -> Self {
        self.add(name.as_bytes());
        match value {
            None => self.add(&[0]),
            Some(v) => {
                self.add(&[1]);
                self.add(v.as_bytes());
            }
        }
        self
    }

    pub fn with_int(self, name: &str, value: i64) -> Self {
        self.with(name, Some(&value.to_string()))
    }

    pub fn with_bool(self, name: &str, value: bool) -> Self {
        self.with(name, Some(if value { "true" } else { "false" }))
    }

    /// Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
    fn add(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(bytes);
    }

    fn hash(&self) -> [u8; HASH_LEN] {
        let digest = self.hasher.clone().finalize();
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(&digest[..HASH_LEN]);
        out
    }
}

/// Why a page token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the page token is not one this list gave out (it may have been cut short or changed): \
         pass back the next_page_token exactly as received, or start again without one"
    )]
    Unreadable,
    #[error(
        "the page token was given for a different list or different filters: ask for the next \
         page with the same filters as the first, or start again without a page token"
    )]
    OtherFilters,
}

/// The token for the page after `key`.
pub fn encode<K: SeekKey>(key: &K, filters: &Filters) -> String {
    let mut bytes = vec![VERSION];
    bytes.extend_from_slice(&filters.hash());
    for part in key.to_parts() {
        match part {
            KeyPart::Int(n) => {
                bytes.push(TAG_INT);
                bytes.extend_from_slice(&n.to_be_bytes());
            }
            KeyPart::Text(s) => {
                // Key texts are ids and names, which input checks keep far below 64 KiB; a
                // longer one would be cut, which at worst starts the next page early.
                let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
                bytes.push(TAG_TEXT);
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
            }
        }
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The page a request asks for: from the start when `token` is empty, else after the key in
/// the token, which must have been given for these `filters`.
pub fn decode<K: SeekKey>(
    token: &str,
    filters: &Filters,
    size: u32,
) -> Result<Page<K>, TokenError> {
    if token.is_empty() {
        return Ok(Page::first(size));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Unreadable);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| TokenError::Unreadable)?;
    let (&version, rest) = bytes.split_first().ok_or(TokenError::Unreadable)?;
    if version != VERSION || rest.len() < HASH_LEN {
        return Err(TokenError::Unreadable);
    }
    let (hash, mut rest) = rest.split_at(HASH_LEN);
    let mut parts = Vec::new();
    while let Some((&tag, after_tag)) = rest.split_first() {
        match tag {
            TAG_INT => {
                let (n, after) = split(after_tag, 8)?;
                let n: [u8; 8] = n.try_into().map_err(|_| TokenError::Unreadable)?;
                parts.push(KeyPart::Int(i64::from_be_bytes(n)));
                rest = after;
            }
            TAG_TEXT => {
                let (len, after_len) = split(after_tag, 2)?;
                let len = u16::from_be_bytes([len[0], len[1]]);
                let (text, after) = split(after_len, usize::from(len))?;
                let text = std::str::from_utf8(text).map_err(|_| TokenError::Unreadable)?;
                parts.push(KeyPart::Text(text.to_string()));
                rest = after;
            }
            _ => return Err(TokenError::Unreadable),
        }
    }
    // Checked after the layout, so a damaged token reads as damaged, not as another filter's.
    if hash != filters.hash() {
        return Err(TokenError::OtherFilters);
    }
    let key = K::from_parts(&parts).ok_or(TokenError::Unreadable)?;
    Ok(Page {
        after: Some(key),
        size,
    })
}

fn split(bytes: &[u8], n: usize) -> Result<(&[u8], &[u8]), TokenError> {
    if bytes.len() < n {
        return Err(TokenError::Unreadable);
    }
    Ok(bytes.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Key = (i64, i64, String, String);

    fn violations() -> Filters {
        Filters::new("violations").with("child", Some("chd-1"))
    }

    #[test]
    fn an_empty_token_is_the_first_page() {
        let page: Page<Key> = decode("", &violations(), 10).unwrap();
        assert_eq!(page, Page::first(10));
    }

    #[test]
    fn a_token_reads_back_as_its_key() {
        let key: Key = (1_700_000_000_000, -5, "v-1".into(), "dev-ü".into());
        let token = encode(&key, &violations());
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let page: Page<Key> = decode(&token, &violations(), 7).unwrap();
        assert_eq!(page.after, Some(key));
        assert_eq!(page.size, 7);
    }

    #[test]
    fn a_token_for_other_filters_or_another_list_is_refused() {
        let token = encode(&(1i64, "a".to_string()), &violations());
        let other = Filters::new("violations").with("child", Some("chd-2"));
        assert_eq!(
            decode::<(i64, String)>(&token, &other, 1),
            Err(TokenError::OtherFilters)
        );
        let unset = Filters::new("violations").with("child", None);
        assert_eq!(
            decode::<(i64, String)>(&token, &unset, 1),
            Err(TokenError::OtherFilters)
        );
        let list = Filters::new("devices").with("child", Some("chd-1"));
        assert_eq!(
            decode::<(i64, String)>(&token, &list, 1),
            Err(TokenError::OtherFilters)
        );
    }

    #[test]
    fn a_token_of_another_shape_is_refused() {
        let token = encode(&(1i64, "a".to_string()), &violations());
        assert_eq!(
            decode::<(String, i64)>(&token, &violations(), 1),
            Err(TokenError::Unreadable)
        );
        assert_eq!(
            decode::<Key>(&token, &violations(), 1),
            Err(TokenError::Unreadable)
        );
    }

    #[test]
    fn garbage_is_refused() {
        for token in [
            "!!!",
            "AA",
            "a b",
            "AQ",
            "AgAAAAAAAAAAAQ",
            &"A".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(
                decode::<(i64, String)>(token, &violations(), 1),
                Err(TokenError::Unreadable),
                "{token}"
            );
        }
    }

    #[test]
    fn filters_are_length_prefixed() {
        let a = Filters::new("x").with("ab", Some("c")).hash();
        let b = Filters::new("x").with("a", Some("bc")).hash();
        assert_ne!(a, b);
    }

    #[test]
    fn sizes_fall_back_and_are_capped() {
        let l = PageLimits {
            default: 100,
            max: 1000,
        };
        assert_eq!(l.size(0, 0), 100);
        assert_eq!(l.size(5, 0), 5);
        assert_eq!(l.size(0, 7), 7);
        assert_eq!(l.size(5, 7), 5);
        assert_eq!(l.size(5000, 0), 1000);
        assert_eq!(l.size(0, 5000), 1000);
    }

    #[test]
    fn a_fetched_page_keeps_its_size_and_says_where_to_go_on() {
        let p = Paged::from_fetched(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(p.next, Some(2));
        let last = Paged::from_fetched(vec![1, 2], 2, |n| *n);
        assert_eq!(last.next, None);
    }

    #[test]
    fn seeking_a_sorted_list_visits_each_row_once() {
        let rows: Vec<i64> = (1..=7).collect();
        let mut page = Page::first(3);
        let mut seen = Vec::new();
        loop {
            let got = Paged::seek_sorted(rows.clone(), &page, |n| *n);
            seen.extend(got.items);
            match got.next {
                Some(k) => page.after = Some(k),
                None => break,
            }
        }
        assert_eq!(seen, rows);
    }

    fn part() -> impl Strategy<Value = KeyPart> {
        prop_oneof![
            any::<i64>().prop_map(KeyPart::Int),
            ".{0,40}".prop_map(KeyPart::Text),
        ]
    }

    struct Parts(Vec<KeyPart>);
    impl SeekKey for Parts {
        fn to_parts(&self) -> Vec<KeyPart> {
            self.0.clone()
        }
        fn from_parts(parts: &[KeyPart]) -> Option<Self> {
            Some(Parts(parts.to_vec()))
        }
    }

    proptest! {
        #[test]
        fn any_key_round_trips(parts in proptest::collection::vec(part(), 0..6), list in ".{0,10}") {
            let filters = Filters::new(&list).with("home", Some("hom-1"));
            let token = encode(&Parts(parts.clone()), &filters);
            prop_assert!(token.len() <= MAX_TOKEN_LEN);
            let page: Page<Parts> = decode(&token, &filters, 3).unwrap();
            prop_assert_eq!(page.after.map(|p| p.0), Some(parts));
        }

        #[test]
        fn any_string_is_refused_or_read_without_panicking(token in ".{0,200}") {
            let _ = decode::<(i64, String)>(&token, &violations(), 1);
            let _ = decode::<Key>(&token, &violations(), 1);
        }

        #[test]
        fn any_bytes_are_refused_or_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let _ = decode::<(i64, String)>(&token, &violations(), 1);
        }
    }
}
