-- Nexmark q1: currency conversion — every bid, with its price in euros.
SET name = 'nexmark-q1-sql';
SET batch_size = 8192;

CREATE TABLE bid (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 10000000);

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT auction, bidder, price * 0.908 AS price, date_time
FROM bid;
