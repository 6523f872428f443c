-- Jobs, the never-twice ledger, runs and leases: what several engines need to share
-- work without running anything twice.

-- seq_id of the next job, as the redb store's `job_seq` counter. A rolled back
-- transaction leaves a gap; nothing reads seq_ids as a count.
CREATE SEQUENCE job_seq AS bigint START 1;

-- One script on one site: the `Job` record as the redb store keeps it, plus the columns
-- that queries and constraints read. `owner` and `lease_expires_at` are set while an
-- engine holds the job (loaded or running) and cleared when it lets go of it.
CREATE TABLE jobs (
    seq_id bigint PRIMARY KEY,
    id text NOT NULL UNIQUE,
    organization text NOT NULL,
    site_id text NOT NULL,
    idempotency_key text,
    status text NOT NULL
        CHECK (status IN ('pending', 'loaded', 'running', 'completed', 'failed', 'deleted')),
    sent boolean NOT NULL,
    owner text,
    lease_expires_at timestamptz,
    record jsonb NOT NULL,
    CONSTRAINT jobs_idempotency UNIQUE (organization, idempotency_key),
    CONSTRAINT jobs_owned_with_lease CHECK ((owner IS NULL) = (lease_expires_at IS NULL))
);
-- The work in flight, as the redb store's `jobs_active` index: claims and recovery read
-- only this.
CREATE INDEX jobs_active ON jobs (status, seq_id)
    WHERE status IN ('pending', 'loaded', 'running');
CREATE INDEX jobs_by_site ON jobs (site_id, seq_id);
CREATE INDEX jobs_by_owner ON jobs (owner, lease_expires_at) WHERE owner IS NOT NULL;

-- One occurrence of a schedule: the `Run` record.
CREATE TABLE runs (
    schedule_id text NOT NULL,
    occurrence bigint NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (schedule_id, occurrence)
);

-- (schedule, occurrence, site) -> the job that ran it. Written in the transaction that
-- creates the job and never removed; the constraint is what keeps an occurrence from
-- running twice on a site, whichever engine launches it.
CREATE TABLE ledger (
    schedule_id text NOT NULL,
    occurrence bigint NOT NULL,
    site_id text NOT NULL,
    job_seq bigint NOT NULL REFERENCES jobs (seq_id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT ledger_once UNIQUE (schedule_id, occurrence, site_id)
);

-- Named leases held by one engine at a time (the scheduler's). `token` grows each time
-- the holder changes: a write carrying a smaller one comes from an engine that lost it.
CREATE TABLE leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    token bigint NOT NULL CHECK (token > 0),
    expires_at timestamptz NOT NULL
);
