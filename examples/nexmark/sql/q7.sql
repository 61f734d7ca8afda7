-- Nexmark q7: highest bid — in each 10-second window, the bids with the highest price (every
-- one of them when several tie).
SET name = 'nexmark-q7-sql';
SET batch_size = 8192;

CREATE TABLE bid (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 10000000);

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT window_end, auction, bidder, price, date_time
FROM (
    SELECT auction, bidder, price, date_time,
           TUMBLE_END(date_time, INTERVAL '10' SECOND) AS window_end,
           RANK() OVER (PARTITION BY TUMBLE(date_time, INTERVAL '10' SECOND) ORDER BY price DESC) AS r
    FROM bid
)
WHERE r = 1;
