-- How many jobs have each status, kept by the statements that write jobs, so `/metrics`
-- sums a few rows instead of counting the table. A statement adds what it changed to its
-- connection's slot (the backend's pid modulo 256): writers on different connections
-- seldom wait on one another's row, and a reader sums the slots. A statement that changes
-- no job's status (a lease renewed, a record rewritten) writes nothing here.
CREATE TABLE job_counts (
    status text NOT NULL,
    slot integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (status, slot)
);

CREATE FUNCTION job_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (status, slot, n)
    SELECT status, pg_backend_pid() % 256, count(*) FROM added GROUP BY status ORDER BY status
    ON CONFLICT (status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION job_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (status, slot, n)
    SELECT status, pg_backend_pid() % 256, sum(delta) FROM (
        SELECT status, 1 AS delta FROM added
        UNION ALL
        SELECT status, -1 AS delta FROM removed
    ) AS changes
    GROUP BY status HAVING sum(delta) <> 0 ORDER BY status
    ON CONFLICT (status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION job_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_counts AS c (status, slot, n)
    SELECT status, pg_backend_pid() % 256, -count(*) FROM removed GROUP BY status ORDER BY status
    ON CONFLICT (status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION job_counts_inserted();
CREATE TRIGGER jobs_counted_on_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION job_counts_updated();
CREATE TRIGGER jobs_counted_on_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION job_counts_deleted();

-- The jobs written before this version, counted once. The migration holds the jobs
-- table's lock until it commits, so no write is counted twice or missed.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO job_counts (status, slot, n)
SELECT status, 0, count(*) FROM jobs GROUP BY status;
