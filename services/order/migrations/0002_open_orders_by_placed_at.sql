-- GET /admission reads the open sagas (orders placed or reserved, not yet confirmed or
-- cancelled): how many, and when the oldest was placed. The gateway asks twice a second, so it
-- must stay cheap however many settled orders the table holds: a partial index holds only the
-- open orders, a few hundred while the shop keeps up, and min(placed_at) is its first entry.
create index orders_open_by_placed_at on orders (placed_at) where status in ('placed', 'reserved');
