-- The gateway's only state: the first answer to each (customer, Idempotency-Key), so a retried
-- POST gets the same answer and creates no second order.
create table idempotency_keys (
    customer_id     text        not null,
    idempotency_key text        not null,
    -- SHA-256 of the canonical request body; the same key with another body is refused.
    request_hash    bytea       not null,
    -- The order id the gateway made for this key; a retry after an upstream failure reuses it,
    -- so the order service's own idempotency makes the retry harmless.
    order_id        uuid        not null,
    -- While a request holds the key: until when. A crashed holder's lease runs out.
    locked_until    timestamptz,
    -- The stored answer, once there is one (null while in flight).
    response_status smallint,
    response_body   bytea,
    created_at      timestamptz not null default now(),
    primary key (customer_id, idempotency_key)
);

create index idempotency_keys_created_at on idempotency_keys (created_at);
