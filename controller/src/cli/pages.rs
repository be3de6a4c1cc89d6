//! Lists a page at a time: by default `haven` asks for page after page until the controller
//! says there are no more (staff want the whole list), or until `--limit` rows; a script can
//! instead ask for one page with `--page-size` and continue with `--page-token`, and then the
//! next page's token is printed (in `--json`, as `next_page_token` beside the rows).

use std::future::Future;

use anyhow::anyhow;
use serde::Serialize;
use tonic::Status;

use super::client::explain;
use super::output::json;

/// What `haven` asks for per page while fetching a whole list; the controller caps it at its
/// own maximum.
const FETCH_PAGE: u32 = 1000;

/// The paging flags every list command takes.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PageArgs {
    /// Show only one page of this many rows (the controller caps it), then the token for the
    /// next page; for scripts. Without it every page is fetched.
    #[arg(long)]
    pub page_size: Option<u32>,
    /// Show the page after the one that printed this token (give the same filters).
    #[arg(long)]
    pub page_token: Option<String>,
}

impl PageArgs {
    /// One page only, as a script asked, rather than the whole list.
    pub fn by_hand(&self) -> bool {
        self.page_size.is_some() || self.page_token.is_some()
    }
}

/// Rows fetched and, when one page was asked for, where the next one starts.
#[derive(Debug)]
pub struct Fetched<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
    pub by_hand: bool,
}

impl<T> Fetched<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Fetched<U> {
        Fetched {
            items: self.items.into_iter().map(f).collect(),
            next_page_token: self.next_page_token,
            by_hand: self.by_hand,
        }
    }
}

impl<T: Serialize> Fetched<T> {
    /// `--json`: the rows as before when the whole list was fetched; one page asked for by
    /// hand is `{"<name>": [...], "next_page_token": "..."}` so a script can go on.
    pub fn print_json(&self, name: &str) -> anyhow::Result<()> {
        if !self.by_hand {
            return json(&self.items);
        }
        let mut out = serde_json::Map::new();
        out.insert(name.to_string(), serde_json::to_value(&self.items)?);
        out.insert(
            "next_page_token".into(),
            self.next_page_token.clone().into(),
        );
        json(&out)
    }
}

impl<T> Fetched<T> {
    /// After a table: how to see the next page, when one page was asked for and more follow.
    pub fn print_next(&self) {
        if self.by_hand && !self.next_page_token.is_empty() {
            println!(
                "More follow: run the same command with --page-token {}",
                self.next_page_token
            );
        }
    }
}

/// Fetches a list: every page (at most `limit` rows when given), or the one page `args`
/// asks for. `fetch(page_size, page_token)` asks the controller for one page and answers its
/// rows and `next_page_token`.
pub async fn fetch<T, Fut>(
    args: &PageArgs,
    limit: Option<u32>,
    mut fetch: impl FnMut(u32, String) -> Fut,
) -> anyhow::Result<Fetched<T>>
where
    Fut: Future<Output = Result<(Vec<T>, String), Status>>,
{
    if limit == Some(0) || args.page_size == Some(0) {
        return Err(anyhow!(
            "a page of 0 rows would show nothing: give a number of 1 or more"
        ));
    }
    if args.by_hand() {
        let (items, next_page_token) = fetch(
            args.page_size.unwrap_or(0),
            args.page_token.clone().unwrap_or_default(),
        )
        .await
        .map_err(explain)?;
        return Ok(Fetched {
            items,
            next_page_token,
            by_hand: true,
        });
    }
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let want = match limit {
            Some(l) => {
                let left = usize::try_from(l).unwrap_or(usize::MAX) - items.len();
                u32::try_from(left).unwrap_or(FETCH_PAGE).min(FETCH_PAGE)
            }
            None => FETCH_PAGE,
        };
        let (page, next) = fetch(want, token.clone()).await.map_err(explain)?;
        items.extend(page);
        if let Some(l) = limit {
            items.truncate(usize::try_from(l).unwrap_or(usize::MAX));
            if items.len() >= usize::try_from(l).unwrap_or(usize::MAX) {
                break;
            }
        }
        if next.is_empty() {
            break;
        }
        // A controller that answered the same token twice would keep us here for ever.
        if next == token {
            return Err(anyhow!(
                "the controller sent the same page twice: try again, or report this"
            ));
        }
        token = next;
    }
    Ok(Fetched {
        items,
        next_page_token: String::new(),
        by_hand: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A list of `n` numbers served `page_size` at a time with the next start as token.
    fn serve(
        n: u32,
        calls: &RefCell<Vec<(u32, String)>>,
        size: u32,
        token: String,
    ) -> std::future::Ready<Result<(Vec<u32>, String), Status>> {
        calls.borrow_mut().push((size, token.clone()));
        let start: u32 = token.parse().unwrap_or(0);
        let size = if size == 0 { 2 } else { size.min(3) };
        let end = (start + size).min(n);
        let next = if end < n {
            end.to_string()
        } else {
            String::new()
        };
        std::future::ready(Ok(((start..end).collect(), next)))
    }

    #[tokio::test]
    async fn every_page_is_fetched_by_default() {
        let calls = RefCell::new(Vec::new());
        let got = fetch(&PageArgs::default(), None, |s, t| serve(8, &calls, s, t))
            .await
            .unwrap();
        assert_eq!(got.items, (0..8).collect::<Vec<_>>());
        assert!(got.next_page_token.is_empty());
        assert_eq!(calls.borrow().len(), 3);
    }

    #[tokio::test]
    async fn a_limit_stops_early_and_asks_for_no_more_than_needed() {
        let calls = RefCell::new(Vec::new());
        let got = fetch(&PageArgs::default(), Some(4), |s, t| serve(8, &calls, s, t))
            .await
            .unwrap();
        assert_eq!(got.items, vec![0, 1, 2, 3]);
        assert_eq!(calls.borrow()[1], (1, "3".to_string()));
    }

    #[tokio::test]
    async fn one_page_by_hand_keeps_its_token() {
        let calls = RefCell::new(Vec::new());
        let args = PageArgs {
            page_size: Some(2),
            page_token: Some("2".into()),
        };
        let got = fetch(&args, None, |s, t| serve(8, &calls, s, t))
            .await
            .unwrap();
        assert_eq!(got.items, vec![2, 3]);
        assert_eq!(got.next_page_token, "4");
        assert!(got.by_hand);
    }
}
