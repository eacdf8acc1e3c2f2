-- Outbox rows the relay could never publish (a topic that does not exist, a value larger than
-- Kafka accepts): moved here from choreo_outbox with their original id, and the reason. While a
-- (topic, key) has a parked row, the relay holds that key's later rows in choreo_outbox, in
-- order; other keys flow. An operator un-parks a key by moving its rows back under their ids:
--
--   with moved as (delete from choreo_outbox_parked where topic = $1 and key = $2
--                  returning id, topic, key, value, headers, created_at)
--   insert into choreo_outbox (id, topic, key, value, headers, created_at)
--   overriding system value select * from moved;
--
-- or gives a row up with `delete from choreo_outbox_parked where id = $1`.
create table choreo_outbox_parked (
    id         bigint      primary key,
    topic      text        not null,
    key        text        not null,
    value      bytea       not null,
    headers    jsonb       not null,
    created_at timestamptz not null,
    error      text        not null,
    parked_at  timestamptz not null default clock_timestamp()
);

create index choreo_outbox_parked_key on choreo_outbox_parked (topic, key);
