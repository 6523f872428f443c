-- Scheduled scripts and the summaries still to write for them.

-- The `ScheduledScript` record, beside the columns lookups read. `due_at` is the next
-- launch (unix milliseconds) of a schedule that may launch (scheduled or launched), null
-- otherwise: the launcher reads the schedules due from its index. A description is
-- unique within its organization by a constraint, whichever engine writes it.
CREATE TABLE schedules (
    id text COLLATE "C" PRIMARY KEY,
    organization text NOT NULL,
    description text NOT NULL,
    due_at bigint,
    record jsonb NOT NULL,
    CONSTRAINT schedules_name_once UNIQUE (organization, description)
);
CREATE INDEX schedules_by_organization ON schedules (organization, id);
CREATE INDEX schedules_due ON schedules (due_at, id) WHERE due_at IS NOT NULL;

-- One entry per record whose summary is to be written (kind: schedule, template or
-- community), replaced when its content changes again before it is written.
CREATE TABLE summary_queue (
    kind text NOT NULL,
    id text NOT NULL,
    entry jsonb NOT NULL,
    PRIMARY KEY (kind, id)
);

-- Approval links' tokens, kept only as their sha256: the `ApprovalToken` record.
CREATE TABLE approval_tokens (
    digest text PRIMARY KEY,
    schedule_id text NOT NULL,
    record jsonb NOT NULL
);
