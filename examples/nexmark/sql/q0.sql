-- Nexmark q0: pass-through — every bid, unchanged (examples/nexmark/q0.toml in SQL).
SET name = 'nexmark-q0-sql';
SET batch_size = 8192;

CREATE TABLE bid (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 10000000);

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out SELECT * FROM bid WHERE true;
