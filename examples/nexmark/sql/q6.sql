-- Nexmark q6: average selling price per seller — each auction's highest bid between its opening
-- and its expiry, then, for each auction, the average of that price over its seller's auctions
-- up to it: the auction and the 9 opened before it (the seller's 10 latest, for the seller's
-- newest auction). Both are updating: the join folds each auction's bids and says its highest
-- once the watermark passes its expiry (again if a later auction row of the id reopens it), and
-- each change re-emits the averages it reaches.
SET name = 'nexmark-q6-sql';
SET batch_size = 8192;

CREATE TABLE auction (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'auction', 'count' = 10000000);
CREATE TABLE bid (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 10000000);

CREATE VIEW auctions AS SELECT id AS auction, seller, date_time, expires FROM auction;

CREATE VIEW winners AS
SELECT a.auction, FIRST_VALUE(a.seller) AS seller, FIRST_VALUE(a.date_time) AS opened,
       MAX(b.price) AS final
FROM auctions AS a
JOIN bid AS b ON a.auction = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
GROUP BY a.auction;

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT auction, seller,
       AVG(final) OVER (PARTITION BY seller ORDER BY opened
                        ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS average
FROM winners;
