-- An index for the inbox's pruner (choreo::prune), which deletes rows whose applied_at is older
-- than the retention. Applied by choreo::db::migrate, which records it in choreo_migrations.
--
-- BRIN, not B-tree: the inbox is written on the consumers' hot path, one row per event applied,
-- and only ever read by its primary key and by the pruner once a minute. A B-tree on applied_at
-- would add an index entry (and its page splits and WAL) to every insert; a BRIN index keeps only
-- the smallest and largest applied_at of each range of 32 table pages, a few kilobytes in all,
-- and costs an insert nothing until the range is summarised. It fits because the table is
-- append-mostly: rows are inserted in applied_at order (now() of the applying transaction), so
-- a page range holds rows of one short period, and "older than the retention" is a few ranges at
-- the start of the table. Pages freed by pruning are filled again with new rows, which widens
-- their ranges' summaries; the pruner then reads a few more pages than it needs, but the table
-- it reads stays as small as the retention keeps it.
--
-- Built inside the migration's transaction (not concurrently): a BRIN build is one sequential
-- scan of the table, and inserts wait for it.
create index if not exists choreo_inbox_applied_at on choreo_inbox
    using brin (applied_at) with (pages_per_range = 32, autosummarize = on);
