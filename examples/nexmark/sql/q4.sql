-- Nexmark q4: average closing price per category — each auction's highest bid between its
-- opening and its expiry, then the running average of those per category.
-- The first aggregate groups the interval join's pairs by its key, so the join folds them itself
-- and says each auction's highest bid once the watermark passes its expiry. Auction ids are
-- unique (the PRIMARY KEY, which Sabot trusts and does not check), so that result is final: the
-- join forgets the auction and the average adds each winning price once. One instance each:
-- the join is then cheap enough that splitting the bids between two instances (copying every
-- column of every bid) costs more than it gains on two cores.
SET name = 'nexmark-q4-sql';
SET batch_size = 8192;

CREATE TABLE auction (PRIMARY KEY (id) NOT ENFORCED, WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'auction', 'count' = 10000000);
CREATE TABLE bid (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'bid', 'count' = 10000000);

CREATE VIEW auctions AS SELECT id AS auction, category, date_time, expires FROM auction;

CREATE VIEW winners AS
SELECT a.auction, FIRST_VALUE(a.category) AS category, MAX(b.price) AS final
FROM auctions AS a
JOIN bid AS b ON a.auction = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
GROUP BY a.auction;

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT category, AVG(final) AS average, COUNT(*) AS auctions FROM winners GROUP BY category;
