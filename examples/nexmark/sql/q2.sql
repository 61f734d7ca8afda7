-- Nexmark q2: selection — the bids of every 123rd auction.
SET name = 'nexmark-q2-sql';
SET batch_size = 8192;

CREATE TABLE bid (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 10000000);

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT auction, price
FROM bid
WHERE auction % 123 = 0;
