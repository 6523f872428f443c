-- Sites with their sealed credentials, users, the audit log, and the facts the store
-- keeps about itself.

-- `credential_key_check`: a fixed text sealed under the engines' credential key, so an
-- engine given another key is refused before it seals anything the others cannot open.
CREATE TABLE store_facts (
    name text PRIMARY KEY,
    value text NOT NULL
);

-- The `StoredSite` record as the redb store keeps it (the public site, its password and
-- private key sealed), beside the columns lookups read. Ids and names compare bytewise
-- (`COLLATE "C"`), as the redb store orders them.
CREATE TABLE sites (
    id text COLLATE "C" PRIMARY KEY,
    organization text NOT NULL,
    name text COLLATE "C" NOT NULL,
    tags text[] NOT NULL,
    record jsonb NOT NULL,
    CONSTRAINT sites_name_once UNIQUE (organization, name)
);
CREATE INDEX sites_by_organization ON sites (organization, id);
CREATE INDEX sites_by_tag ON sites USING gin (tags);

-- Users by organization: a user id names a user only within its organization.
CREATE TABLE users (
    organization text NOT NULL,
    id text COLLATE "C" NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (organization, id)
);

-- The append-only audit log: the `AuditEntry` record by sequence number.
CREATE SEQUENCE audit_seq AS bigint START 1;
CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    organization text NOT NULL,
    record jsonb NOT NULL
);
