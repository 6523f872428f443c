//! Listing pages as rendered, kept until the store's next commit: a listing asked again
//! while nothing changed is answered from memory, whatever its schedules and runs hold.
//! A page is kept under its organization and query, the store's commit count read
//! before the page was, and the second it was rendered in (`t_minus` counts down), so a
//! commit or the next second makes every kept page stale. Requests that find the same
//! page missing share one rendering: the first renders it, the others wait for it. At
//! most [`MAX_PAGES`] pages are kept; past that, all are dropped and kept anew.
//!
//! Only a store that knows its commit count ([`crate::store::Backend::generation`])
//! has its pages kept: on one that other engines write too, nothing says a kept page is
//! still current, so every listing is read and rendered anew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use tokio::sync::OnceCell;

/// One page: rendered once, by whoever comes first.
pub(crate) type Slot = Arc<OnceCell<Bytes>>;

/// Most pages kept at once.
pub(crate) const MAX_PAGES: usize = 512;

/// Which state of the store, and which second, a page was rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moment {
    pub generation: u64,
    pub second: i64,
}

#[derive(Debug, Default)]
struct Kept {
    moment: Option<Moment>,
    pages: HashMap<(String, String), Slot>,
}

/// The kept pages. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct ListingPages {
    kept: Mutex<Kept>,
}

impl ListingPages {
    /// The slot of the page for `organization` and `query` rendered at `moment`: the one
    /// kept, or a new one, kept unless pages of a later moment are kept already (then it
    /// is the caller's alone). Pages of an earlier moment are dropped.
    pub(crate) fn slot(&self, moment: Moment, organization: &str, query: &str) -> Slot {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.moment {
            Some(now) if now == moment => {}
            Some(now) if (now.generation, now.second) > (moment.generation, moment.second) => {
                return Slot::default();
            }
            _ => {
                kept.pages.clear();
                kept.moment = Some(moment);
            }
        }
        let key = (organization.to_owned(), query.to_owned());
        if let Some(slot) = kept.pages.get(&key) {
            return slot.clone();
        }
        if kept.pages.len() >= MAX_PAGES {
            kept.pages.clear();
        }
        kept.pages.entry(key).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(generation: u64, second: i64) -> Moment {
        Moment { generation, second }
    }

    fn fill(pages: &ListingPages, moment: Moment, org: &str, query: &str, page: &'static [u8]) {
        pages
            .slot(moment, org, query)
            .set(Bytes::from_static(page))
            .expect("an empty slot");
    }

    fn kept(pages: &ListingPages, moment: Moment, org: &str, query: &str) -> Option<Bytes> {
        pages.slot(moment, org, query).get().cloned()
    }

    #[test]
    fn a_page_is_served_only_at_the_moment_it_was_rendered() {
        let pages = ListingPages::default();
        assert_eq!(kept(&pages, at(1, 10), "acme", "page=1"), None);
        fill(&pages, at(1, 10), "acme", "page=1", b"one");
        assert_eq!(
            kept(&pages, at(1, 10), "acme", "page=1"),
            Some(Bytes::from_static(b"one"))
        );
        assert_eq!(
            kept(&pages, at(1, 10), "other", "page=1"),
            None,
            "another organization"
        );
        assert_eq!(
            kept(&pages, at(1, 10), "acme", "page=2"),
            None,
            "another query"
        );
        assert_eq!(
            kept(&pages, at(2, 10), "acme", "page=1"),
            None,
            "after a commit"
        );
        assert_eq!(
            kept(&pages, at(2, 11), "acme", "page=1"),
            None,
            "a second later"
        );
    }

    #[test]
    fn a_page_rendered_before_a_commit_never_replaces_a_newer_one() {
        let pages = ListingPages::default();
        fill(&pages, at(5, 10), "acme", "q", b"new");
        fill(&pages, at(4, 10), "acme", "q", b"old");
        assert_eq!(
            kept(&pages, at(5, 10), "acme", "q"),
            Some(Bytes::from_static(b"new"))
        );
        fill(&pages, at(6, 10), "acme", "q", b"newer");
        assert_eq!(
            kept(&pages, at(6, 10), "acme", "q"),
            Some(Bytes::from_static(b"newer"))
        );
        assert_eq!(kept(&pages, at(5, 10), "acme", "q"), None);
    }

    #[tokio::test]
    async fn requests_missing_the_same_page_render_it_once() {
        let pages = Arc::new(ListingPages::default());
        let renders = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut waiting = Vec::new();
        for _ in 0..8 {
            let (pages, renders) = (pages.clone(), renders.clone());
            waiting.push(tokio::spawn(async move {
                let slot = pages.slot(at(1, 1), "acme", "q");
                slot.get_or_init(|| async {
                    renders.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Bytes::from_static(b"page")
                })
                .await
                .clone()
            }));
        }
        for w in waiting {
            assert_eq!(w.await.expect("task"), Bytes::from_static(b"page"));
        }
        assert_eq!(renders.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn the_number_kept_is_bounded() {
        let pages = ListingPages::default();
        for i in 0..=MAX_PAGES {
            fill(&pages, at(1, 1), "acme", &i.to_string(), b"x");
        }
        let kept = pages.kept.lock().expect("lock").pages.len();
        assert!(kept <= MAX_PAGES, "{kept}");
    }
}
