-- The relay is woken by the writers' doorbell after their commit (see choreo::doorbell), no
-- longer by a NOTIFY inside every transaction that writes the outbox: PostgreSQL serialises
-- the commits of all notifying transactions of the cluster on one lock held across their WAL
-- flush, which under load queued every service's commits one fsync at a time.
drop trigger if exists choreo_outbox_notify on choreo_outbox;
drop function if exists choreo_outbox_notify();

-- The outbox is a queue: every row is inserted and soon deleted. Vacuum it after a few thousand
-- dead rows rather than after a fifth of the table, so the relay's index scan does not wade
-- through dead entries between vacuums.
alter table choreo_outbox set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
