-- The organization an event was delivered for, once an attempt has named it: dead
-- letters are listed and retried by organization.
ALTER TABLE outbox ADD COLUMN organization text;
CREATE INDEX outbox_dead ON outbox (organization, id) WHERE state = 'dead';
CREATE INDEX outbox_delivered ON outbox (id) WHERE state = 'delivered';
