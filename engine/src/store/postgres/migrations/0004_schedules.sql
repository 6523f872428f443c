-- Scheduled scripts and the summaries still to write for them.

-- The `ScheduledScript` record, beside the columns lookups read. `due_at` is the next
-- launch (unix milliseconds) of a schedule that may launch (scheduled or launched), null
-- otherwise: the launcher reads the schedules due from its index. A description is
-- unique within its organization by a constraint, whichever engine writes it. What a
-- listing filters on is kept as the engine computes it: the description lowercased
-- (`name_lower`), the recurrence's frequency code (0 one-time, 1 hourly, 2 daily,
-- 3 weekly, 4 monthly), the creation time and the creator.
CREATE TABLE schedules (
    id text COLLATE "C" PRIMARY KEY,
    organization text NOT NULL,
    description text NOT NULL,
    due_at bigint,
    name_lower text NOT NULL,
    frequency smallint NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    record jsonb NOT NULL,
    CONSTRAINT schedules_name_once UNIQUE (organization, description)
);
CREATE INDEX schedules_by_organization ON schedules (organization, id);
CREATE INDEX schedules_by_creator ON schedules (organization, created_by, id);
CREATE INDEX schedules_by_created ON schedules (organization, created_at);
CREATE INDEX schedules_due ON schedules (due_at, id) WHERE due_at IS NOT NULL;

-- One entry per record whose summary is to be written (kind: schedule, template or
-- community), replaced when its content changes again before it is written. An engine
-- takes due entries for a while (`taken_until`), so two engines do not both ask the
-- generator for one summary; an entry whose engine stopped is taken again after that.
CREATE TABLE summary_queue (
    kind text NOT NULL,
    id text NOT NULL,
    entry jsonb NOT NULL,
    taken_until timestamptz,
    PRIMARY KEY (kind, id)
);

-- Approval links' tokens, kept only as their sha256: the `ApprovalToken` record.
CREATE TABLE approval_tokens (
    digest text PRIMARY KEY,
    schedule_id text NOT NULL,
    record jsonb NOT NULL
);
