-- The worker is woken by a doorbell the consumer rings after its commit (see
-- choreo::doorbell), no longer by a NOTIFY inside the consumer's transaction: PostgreSQL
-- serialises the commits of all notifying transactions of the cluster on one lock held across
-- their WAL flush.
drop trigger if exists payments_notify on payments;
drop function if exists payments_notify();
