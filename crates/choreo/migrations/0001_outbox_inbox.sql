-- The transactional outbox and the inbox of the choreo backbone.
-- Applied by choreo::db::migrate, which records it in choreo_migrations.

-- Events written in the same transaction as the state change they announce. The relay publishes
-- them in id order and deletes them once Kafka has acknowledged them.
create table choreo_outbox (
    id         bigint generated always as identity primary key,
    topic      text        not null,
    key        text        not null,
    value      bytea       not null,
    -- Kafka headers as an ordered JSON array of [name, value] pairs (UTF-8 text).
    headers    jsonb       not null,
    created_at timestamptz not null default clock_timestamp()
);

-- Wakes the relay as soon as a transaction that wrote events commits (NOTIFY is delivered at
-- commit, once per transaction and channel).
create function choreo_outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('choreo_outbox', '');
    return null;
end
$$;

create trigger choreo_outbox_notify
    after insert on choreo_outbox
    for each statement execute function choreo_outbox_notify();

-- One row per event a consumer has applied, written in the transaction that applied it: a
-- redelivered event finds its row and is skipped.
create table choreo_inbox (
    consumer   text        not null,
    event_id   uuid        not null,
    applied_at timestamptz not null default now(),
    primary key (consumer, event_id)
);
