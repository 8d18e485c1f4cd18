-- Every seat free again and no holds, between pgbench runs (bench/run).
TRUNCATE pgbench_holds RESTART IDENTITY;
UPDATE pgbench_seats SET status = 'free', hold_id = NULL WHERE status <> 'free';
VACUUM ANALYZE pgbench_seats;
VACUUM ANALYZE pgbench_holds;
