-- The events an order's later work continues (choreo's envelope::Cause as JSON: event id, type,
-- saga, time, traceparent). `placed_cause` is the order's own OrderPlaced: a customer's
-- cancellation names it. `last_cause` is the event the order's latest move followed: the
-- deadline's cancellation names it (or OrderPlaced while there is none) and continues its
-- trace. Null in rows made before this migration: their events are still written, without a
-- causation.
alter table orders
    add column placed_cause jsonb,
    add column last_cause   jsonb;
