-- Private script templates: the current `Template` record, and every version of it
-- (the current one included) as a `TemplateVersion`.
CREATE TABLE templates (
    id text COLLATE "C" PRIMARY KEY,
    organization text NOT NULL,
    created_at timestamptz NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX templates_by_organization ON templates (organization, created_at, id);

CREATE TABLE template_versions (
    id text NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version bigint NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (id, version)
);
