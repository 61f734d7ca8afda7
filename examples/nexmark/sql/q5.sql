-- Nexmark q5: hot items — the auctions with the most bids in each 10-second window, every 2
-- seconds: sliding-window counts per auction, then the first rank of each window.
SET name = 'nexmark-q5-sql';
SET batch_size = 8192;
SET parallelism = 2;

CREATE TABLE bid (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 10000000);

CREATE VIEW counts AS
SELECT auction, COUNT(*) AS bids,
       HOP_END(date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS window_end
FROM bid
GROUP BY auction, HOP(date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND);

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT window_end, auction, bids
FROM (SELECT *, RANK() OVER (PARTITION BY window_end ORDER BY bids DESC) AS r FROM counts)
WHERE r = 1;
