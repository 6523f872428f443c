use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;

/// Canned replies by URL, and the URLs asked for.
#[derive(Default)]
struct Canned {
    replies: BTreeMap<String, Reply>,
    asked: RefCell<Vec<String>>,
}

impl Canned {
    fn json(mut self, url: &str, body: serde_json::Value) -> Self {
        self.replies.insert(
            url.into(),
            Reply {
                status: 200,
                headers: Vec::new(),
                body: body.to_string().into_bytes(),
            },
        );
        self
    }

    fn text(mut self, url: &str, body: &str) -> Self {
        self.replies.insert(
            url.into(),
            Reply {
                status: 200,
                headers: Vec::new(),
                body: body.as_bytes().to_vec(),
            },
        );
        self
    }

    fn reply(mut self, url: &str, reply: Reply) -> Self {
        self.replies.insert(url.into(), reply);
        self
    }
}

impl Fetch for Canned {
    fn get(&self, url: &str, _accept: &str, limit: u64) -> Result<Reply, SourceError> {
        self.asked.borrow_mut().push(url.to_owned());
        let reply = self.replies.get(url).cloned().unwrap_or(Reply {
            status: 404,
            headers: Vec::new(),
            body: br#"{"message":"Not Found"}"#.to_vec(),
        });
        if reply.body.len() as u64 > limit {
            return Err(SourceError::TooLarge(format!("{url}: larger than {limit}")));
        }
        Ok(reply)
    }
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn github() -> Canned {
    Canned::default()
        .json(
            "https://api.github.com/repos/acme/scripts/commits/main",
            serde_json::json!({"sha": SHA}),
        )
        .text(
            &format!("https://raw.githubusercontent.com/acme/scripts/{SHA}/ros/backup.rsc"),
            "/system backup save name=nightly\n",
        )
        .text(
            &format!("https://raw.githubusercontent.com/acme/scripts/{SHA}/README.md"),
            "# Backups\n",
        )
        .json(
            "https://api.github.com/repos/acme/scripts",
            serde_json::json!({
                "full_name": "acme/scripts", "html_url": "https://github.com/acme/scripts",
                "description": "RouterOS helpers", "stargazers_count": 42,
                "created_at": "2020-01-02T03:04:05Z", "license": {"spdx_id": "MIT"}
            }),
        )
        .json(
            "https://api.github.com/users/acme",
            serde_json::json!({
                "login": "acme", "name": "Acme Networks", "html_url": "https://github.com/acme",
                "avatar_url": "https://avatars.githubusercontent.com/u/1", "followers": 7,
                "created_at": "2015-05-06T07:08:09Z"
            }),
        )
}

#[test]
fn a_file_is_pinned_to_the_commit_its_reference_names() {
    let f = github();
    let e = fetch_entry(
        &f,
        &Bases::default(),
        "https://github.com/acme/scripts/blob/main/ros/backup.rsc",
        Some("https://raw.githubusercontent.com/acme/scripts/main/README.md"),
    )
    .expect("entry");
    assert_eq!(e.name, "backup.rsc");
    assert_eq!(e.path, "ros/backup.rsc");
    assert_eq!(e.commit, SHA);
    assert_eq!(e.reference, "main");
    assert_eq!(e.content, "/system backup save name=nightly\n");
    assert_eq!(
        e.raw_url,
        format!("https://raw.githubusercontent.com/acme/scripts/{SHA}/ros/backup.rsc")
    );
    assert_eq!(
        e.web_url,
        format!("https://github.com/acme/scripts/blob/{SHA}/ros/backup.rsc")
    );
    assert_eq!(e.repository.stars, 42);
    assert_eq!(e.repository.license.as_deref(), Some("MIT"));
    assert_eq!(e.owner.name.as_deref(), Some("Acme Networks"));
    assert_eq!(e.owner.followers, 7);
    assert_eq!(e.readme.as_deref(), Some("# Backups\n"));
    // The README was read at the same commit: the reference was resolved once.
    let resolves = f
        .asked
        .borrow()
        .iter()
        .filter(|u| u.contains("/commits/"))
        .count();
    assert_eq!(resolves, 1);
}

#[test]
fn a_spent_rate_limit_says_when_to_retry() {
    let f = github().reply(
        "https://api.github.com/repos/acme/scripts/commits/main",
        Reply {
            status: 403,
            headers: vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), "1700000000".into()),
            ],
            body: br#"{"message":"API rate limit exceeded"}"#.to_vec(),
        },
    );
    let e = fetch_entry(
        &f,
        &Bases::default(),
        "https://raw.githubusercontent.com/acme/scripts/main/ros/backup.rsc",
        None,
    )
    .expect_err("limited");
    let SourceError::Unavailable(message) = e else {
        panic!("{e:?}")
    };
    assert!(message.contains("rate limit"), "{message}");
    assert!(message.contains("1700000000"), "{message}");
}

#[test]
fn missing_files_binary_content_and_bad_answers_are_clear_errors() {
    let base = Bases::default();
    let missing = fetch_entry(
        &github(),
        &base,
        "https://raw.githubusercontent.com/acme/scripts/main/ros/nope.rsc",
        None,
    );
    assert!(
        matches!(missing, Err(SourceError::NotFound(_))),
        "{missing:?}"
    );
    let binary = github().text(
        &format!("https://raw.githubusercontent.com/acme/scripts/{SHA}/ros/backup.rsc"),
        "\0\u{1}binary",
    );
    let e = fetch_entry(
        &binary,
        &base,
        "https://raw.githubusercontent.com/acme/scripts/main/ros/backup.rsc",
        None,
    );
    assert!(
        matches!(e, Err(SourceError::Other(ref m)) if m.contains("not a text file")),
        "{e:?}"
    );
    let odd = github().json(
        "https://api.github.com/repos/acme/scripts/commits/main",
        serde_json::json!({"sha": "main"}),
    );
    let e = fetch_entry(
        &odd,
        &base,
        "https://raw.githubusercontent.com/acme/scripts/main/ros/backup.rsc",
        None,
    );
    assert!(matches!(e, Err(SourceError::Other(_))), "{e:?}");
    let big = github().text(
        &format!("https://raw.githubusercontent.com/acme/scripts/{SHA}/ros/backup.rsc"),
        &"x".repeat(MAX_SCRIPT_BYTES as usize + 1),
    );
    let e = fetch_entry(
        &big,
        &base,
        "https://raw.githubusercontent.com/acme/scripts/main/ros/backup.rsc",
        None,
    );
    assert!(matches!(e, Err(SourceError::TooLarge(_))), "{e:?}");
}
