-- The payment service's own tables (the outbox and inbox are the backbone's, see choreo::db).

-- What the payment service knows of each order before (or without) a payment: who pays, how
-- much, and whether the order was cancelled before its stock was reserved. Every handler locks
-- the order's row first, so the events of one order are applied one at a time even when they
-- come from different topics.
create table orders_seen (
    order_id    text primary key,
    -- Null while only other events of the order were seen (OrderPlaced is on another topic).
    customer_id text,
    currency    text,
    total_minor bigint check (total_minor >= 0),
    -- OrderCancelled came before any payment existed: do not charge.
    cancelled   boolean     not null default false,
    seen_at     timestamptz not null default now()
);

-- One payment per order. The consumer creates it (pending, or voided when the order was already
-- cancelled); the worker claims due rows, calls the provider outside any transaction and
-- records the outcome; a refund owed is a row in refund_pending.
create table payments (
    payment_id         uuid primary key,
    order_id           text        not null constraint payments_order_id_key unique,
    amount_minor       bigint      not null check (amount_minor >= 0),
    currency           text        not null,
    -- Null until OrderPlaced is seen; such a payment is not charged yet.
    customer_id        text,
    status             text        not null check (status in
        ('pending', 'charging', 'captured', 'failed', 'voided', 'refund_pending', 'refunded')),
    -- The order was cancelled while the provider was being called.
    cancel_requested   boolean     not null default false,
    -- Provider calls made for the charge (refund calls are counted apart).
    attempts           int         not null default 0,
    refund_attempts    int         not null default 0,
    next_attempt_at    timestamptz not null default now(),
    -- Set while a worker calls the provider; a row whose lease ran out is taken over.
    lease_until        timestamptz,
    provider_reference text,
    refund_reference   text,
    refunded_minor     bigint      not null default 0 check (refunded_minor >= 0),
    last_error         text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    check (refunded_minor <= amount_minor)
);

-- The worker's claim: due rows in the order they fell due.
create index payments_due on payments (next_attempt_at)
    where status in ('pending', 'charging', 'refund_pending');

-- Wakes the worker when a payment becomes workable (NOTIFY is delivered at commit).
create function payments_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('payment_work', '');
    return null;
end
$$;

create trigger payments_notify
    after insert or update of status on payments
    for each row when (new.status in ('pending', 'refund_pending'))
    execute function payments_notify();
