-- What a job leaves beside its record: the export before it ran (`backup`) and the diff
-- of what it changed (`diff`), each sealed under the engines' credential key and bound to
-- its job (the redb store's `job_backups` and `job_diffs`).
CREATE TABLE job_artifacts (
    seq_id bigint NOT NULL REFERENCES jobs (seq_id),
    kind text NOT NULL CHECK (kind IN ('backup', 'diff')),
    sealed bytea NOT NULL,
    PRIMARY KEY (seq_id, kind)
);
