-- The event that started a payment's work, kept with the row that waits for it (choreo's
-- envelope::Cause as JSON: event id, type, saga, time, traceparent), so that the events the
-- worker and the reconciler write later name their cause and continue its trace: `cause` is
-- the InventoryReserved that created the payment, `refund_cause` the OrderCancelled that asked
-- for its money back. Null in rows made before this migration: their events are still
-- written, without a causation.
alter table payments
    add column cause        jsonb,
    add column refund_cause jsonb;
