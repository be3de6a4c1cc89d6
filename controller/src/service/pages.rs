//! Page tokens on the wire: reads a request's `page_token` into the page the store seeks to,
//! refusing one this list did not give out with INVALID_ARGUMENT `PAGE_TOKEN_INVALID` naming
//! the field, and turns the key of a page's last row into `next_page_token`. The layout of a
//! token is `domain::paging`'s; this is only its edge.

use tonic::Status;

use super::errors::{PAGE_TOKEN_INVALID, bad_field_because};
use crate::domain::HomeScope;
pub use crate::domain::paging::{Filters, PageLimits, Paged, WHOLE_LIST};
use crate::domain::paging::{Page, SeekKey, decode, encode};

/// The page `token` asks for (the first when empty), of `size` rows, if the token was given
/// for these `filters`.
pub fn page<K: SeekKey>(token: &str, filters: &Filters, size: u32) -> Result<Page<K>, Status> {
    decode(token.trim(), filters, size)
        .map_err(|e| bad_field_because("page_token", PAGE_TOKEN_INVALID, e))
}

/// `next_page_token` for a page whose last row has key `next` (empty on the last page).
pub fn next_token<K: SeekKey>(next: Option<&K>, filters: &Filters) -> String {
    next.map(|k| encode(k, filters)).unwrap_or_default()
}

/// The homes a caller's lists are narrowed to in the store (`None`: every home).
pub fn homes_of(scope: &HomeScope) -> Option<Vec<String>> {
    match scope {
        HomeScope::Everywhere => None,
        HomeScope::Only(ids) => Some(ids.iter().cloned().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::errors::read;

    #[test]
    fn a_forged_token_is_refused_by_reason_naming_the_field() {
        let filters = Filters::new("children");
        let status = page::<(String, String, String)>("not-a-token", &filters, 5).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let got = read(&status);
        assert_eq!(got.reason, PAGE_TOKEN_INVALID);
        assert_eq!(got.fields, vec!["page_token".to_string()]);
    }

    #[test]
    fn a_next_token_reads_back() {
        let filters = Filters::new("sanctions").with("home", None);
        let key = (5i64, "snc-1".to_string());
        let token = next_token(Some(&key), &filters);
        let got: Page<(i64, String)> = page(&token, &filters, 2).unwrap();
        assert_eq!(got.after, Some(key));
        assert_eq!(next_token::<(i64, String)>(None, &filters), "");
    }
}
