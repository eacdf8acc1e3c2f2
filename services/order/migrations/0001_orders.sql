-- The order service's own state: orders with their status, the saga timeline each order shows,
-- and the catalogue that prices order lines.

create table catalog (
    sku              text primary key,
    currency         text   not null,
    unit_price_minor bigint not null check (unit_price_minor > 0)
);

-- The demo shop's catalogue; prices in minor units.
insert into catalog (sku, currency, unit_price_minor) values
    ('MUG-01', 'EUR', 1250),
    ('TEE-01', 'EUR', 1999),
    ('CAP-01', 'EUR', 1500),
    ('SOCK-01', 'EUR', 499),
    ('BOOK-01', 'EUR', 2999),
    ('RARE-01', 'EUR', 9999);

create table orders (
    order_id      text primary key,
    customer_id   text        not null,
    status        text        not null check (status in ('placed', 'reserved', 'confirmed', 'shipped', 'cancelled')),
    cancel_reason text,
    lines         jsonb       not null,
    currency      text        not null,
    total_minor   bigint      not null check (total_minor >= 0),
    payment_id    text,
    placed_at     timestamptz not null,
    deadline_at   timestamptz not null,
    updated_at    timestamptz not null
);

-- The deadline sweeper reads open orders by deadline.
create index orders_open_by_deadline on orders (deadline_at) where status in ('placed', 'reserved');

create table order_timeline (
    id         bigserial primary key,
    order_id   text        not null references orders (order_id),
    at         timestamptz not null,
    event_type text        not null,
    producer   text        not null,
    detail     text        not null default ''
);

create index order_timeline_by_order on order_timeline (order_id, id);
