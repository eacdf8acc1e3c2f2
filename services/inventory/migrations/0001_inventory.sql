-- The inventory service's own tables (the backbone's outbox and inbox are migrated by choreo).

-- One row per SKU. Units move between available, reserved and sold but are never made or lost:
-- available + reserved + sold = received at all times; a receipt adds to received and available.
create table stock (
    sku       text primary key,
    available int not null constraint stock_available_not_negative check (available >= 0),
    reserved  int not null constraint stock_reserved_not_negative check (reserved >= 0),
    sold      int not null constraint stock_sold_not_negative check (sold >= 0),
    received  int not null,
    constraint stock_conserved check (available + reserved + sold = received)
);

-- One row per order seen, rejected ones included: the row's status guards every transition and
-- makes handling an order's events idempotent.
create table reservations (
    order_id       text primary key,
    -- Null for a rejected order (nothing was reserved).
    reservation_id text unique,
    status         text not null
                   constraint reservations_status_known
                   check (status in ('reserved', 'released', 'sold', 'rejected')),
    -- [{"sku": "...", "quantity": n}], one entry per SKU (lines of one SKU summed).
    items          jsonb not null,
    currency       text not null,
    amount_minor   bigint not null,
    -- Why it was rejected or released (the event's reason symbol); null otherwise.
    reason         text,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);

create index reservations_created_at on reservations (created_at desc);
