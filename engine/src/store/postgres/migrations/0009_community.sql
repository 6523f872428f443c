-- Community scripts: the `CommunityScript` record, the source (URL and commit) each
-- fetched script came from, and the queue of submissions to process. An engine takes a
-- queued submission for a while (`taken_until`), so two engines do not fetch the same
-- one at once; one whose engine stopped is taken again once that time has passed.
CREATE TABLE community_scripts (
    id text COLLATE "C" PRIMARY KEY,
    github_url text NOT NULL,
    readme_url text,
    record jsonb NOT NULL
);

CREATE TABLE community_sources (
    github_url text NOT NULL,
    commit_sha text NOT NULL,
    id text NOT NULL REFERENCES community_scripts (id),
    PRIMARY KEY (github_url, commit_sha)
);

CREATE TABLE community_queue (
    id text PRIMARY KEY REFERENCES community_scripts (id),
    due_at bigint NOT NULL,
    attempts integer NOT NULL,
    taken_until timestamptz
);
CREATE INDEX community_queue_due ON community_queue (due_at, id);
