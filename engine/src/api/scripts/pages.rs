//! Listing pages as rendered, kept until the store's next commit: a listing asked again
//! while nothing changed is answered from memory, whatever its schedules and runs hold.
//! A page is kept under its organization and query, the store's commit count read
//! before the page was, and the second it was rendered in (`t_minus` counts down), so a
//! commit or the next second makes every kept page stale. At most [`MAX_PAGES`] pages
//! are kept; past that, all are dropped and kept anew.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;

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
    pages: HashMap<(String, String), Bytes>,
}

/// The kept pages. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct ListingPages {
    kept: Mutex<Kept>,
}

impl ListingPages {
    /// The page kept for `organization` and `query` at `moment`, if any.
    pub(crate) fn get(&self, moment: Moment, organization: &str, query: &str) -> Option<Bytes> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.moment != Some(moment) {
            return None;
        }
        kept.pages
            .get(&(organization.to_owned(), query.to_owned()))
            .cloned()
    }

    /// Keeps a page rendered at `moment`; pages of an earlier moment are dropped, and a
    /// page of an earlier moment than those kept is not kept.
    pub(crate) fn put(&self, moment: Moment, organization: &str, query: &str, page: Bytes) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.moment {
            Some(now) if now == moment => {}
            Some(now) if (now.generation, now.second) > (moment.generation, moment.second) => {
                return;
            }
            _ => {
                kept.pages.clear();
                kept.moment = Some(moment);
            }
        }
        if kept.pages.len() >= MAX_PAGES {
            kept.pages.clear();
        }
        kept.pages
            .insert((organization.to_owned(), query.to_owned()), page);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(generation: u64, second: i64) -> Moment {
        Moment { generation, second }
    }

    #[test]
    fn a_page_is_served_only_at_the_moment_it_was_rendered() {
        let pages = ListingPages::default();
        assert_eq!(pages.get(at(1, 10), "acme", "page=1"), None);
        pages.put(at(1, 10), "acme", "page=1", Bytes::from_static(b"one"));
        assert_eq!(
            pages.get(at(1, 10), "acme", "page=1"),
            Some(Bytes::from_static(b"one"))
        );
        assert_eq!(
            pages.get(at(1, 10), "other", "page=1"),
            None,
            "another organization"
        );
        assert_eq!(
            pages.get(at(1, 10), "acme", "page=2"),
            None,
            "another query"
        );
        assert_eq!(
            pages.get(at(2, 10), "acme", "page=1"),
            None,
            "after a commit"
        );
        assert_eq!(
            pages.get(at(1, 11), "acme", "page=1"),
            None,
            "a second later"
        );
    }

    #[test]
    fn a_page_rendered_before_a_commit_never_replaces_a_newer_one() {
        let pages = ListingPages::default();
        pages.put(at(5, 10), "acme", "q", Bytes::from_static(b"new"));
        pages.put(at(4, 10), "acme", "q", Bytes::from_static(b"old"));
        assert_eq!(
            pages.get(at(5, 10), "acme", "q"),
            Some(Bytes::from_static(b"new"))
        );
        pages.put(at(6, 10), "acme", "q", Bytes::from_static(b"newer"));
        assert_eq!(pages.get(at(5, 10), "acme", "q"), None);
        assert_eq!(
            pages.get(at(6, 10), "acme", "q"),
            Some(Bytes::from_static(b"newer"))
        );
    }

    #[test]
    fn the_number_kept_is_bounded() {
        let pages = ListingPages::default();
        for i in 0..=MAX_PAGES {
            pages.put(at(1, 1), "acme", &i.to_string(), Bytes::from_static(b"x"));
        }
        let kept = pages.kept.lock().expect("lock").pages.len();
        assert!(kept <= MAX_PAGES, "{kept}");
    }
}
