-- The shipping service's own table (the backbone's outbox and inbox are migrated by choreo).

-- One shipment per confirmed order: the primary key is what makes a second OrderConfirmed for the
-- same order do nothing.
create table shipments (
    order_id     text primary key,
    shipment_id  text not null unique,
    carrier      text not null,
    status       text not null constraint shipments_status_known check (status in ('scheduled')),
    scheduled_at timestamptz not null
);

create index shipments_scheduled_at on shipments (scheduled_at desc);
