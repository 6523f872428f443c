-- The transactional outbox: events written with the change that causes them, claimed by
-- one engine at a time under a lease, delivered at least once and in order per job.

CREATE SEQUENCE outbox_seq AS bigint START 1;

-- The `OutboxEvent` record, plus the columns claims read. `job_id` is the job an event
-- concerns (its payload's `job_id`), if any.
CREATE TABLE outbox (
    id bigint PRIMARY KEY,
    job_id text,
    state text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    next_attempt_at timestamptz NOT NULL,
    owner text,
    lease_expires_at timestamptz,
    record jsonb NOT NULL,
    CONSTRAINT outbox_owned_with_lease CHECK ((owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX outbox_by_job ON outbox (job_id, id) WHERE state = 'pending';
