-- The state of the replay tests' small service: a running total per key.
create table tallies (
    key        text primary key,
    total      bigint not null,
    -- An id the service makes itself: never the same twice, so never compared.
    tally_id   uuid not null default gen_random_uuid(),
    updated_at timestamptz not null default now()
);
