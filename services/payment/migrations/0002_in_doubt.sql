-- A charge whose outcome we did not see (a timeout, a 5xx, a pending charge, a worker lost
-- mid-call) is in doubt, not failed: the worker asks the provider by idempotency key until it
-- says captured, declined or voided. Failed and voided mean the provider said no capture exists.
alter table payments drop constraint payments_status_check;
alter table payments add constraint payments_status_check check (status in
    ('pending', 'charging', 'in_doubt', 'captured', 'failed', 'voided', 'refund_pending',
     'refunded'));

-- The worker's claim covers payments in doubt too.
drop index payments_due;
create index payments_due on payments (next_attempt_at)
    where status in ('pending', 'charging', 'in_doubt', 'refund_pending');
