-- Notification channels with their secret settings sealed (the redb store's `Stored`
-- channel record), and the generation of each organization's notify-url signing secret.
CREATE TABLE channels (
    id text COLLATE "C" PRIMARY KEY,
    organization text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    record jsonb NOT NULL,
    CONSTRAINT channels_name_once UNIQUE (organization, name)
);
CREATE INDEX channels_by_organization ON channels (organization, created_at, id);

CREATE TABLE notify_secrets (
    organization text PRIMARY KEY,
    record jsonb NOT NULL
);
