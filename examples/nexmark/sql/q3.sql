-- Nexmark q3: local item suggestion — the auctions of category 10 whose seller lives in
-- Oregon, Idaho or California, with the seller as registered when the auction opened.
SET name = 'nexmark-q3-sql';
SET batch_size = 8192;

CREATE TABLE person (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'person', 'count' = 10000000);
CREATE TABLE auction (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'auction', 'count' = 10000000);

CREATE VIEW auctions AS SELECT * FROM auction WHERE category = 10;
CREATE VIEW sellers AS
SELECT id AS seller, name, city, state, date_time FROM person WHERE state IN ('or', 'id', 'ca');

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT s.name, s.city, s.state, a.id
FROM auctions AS a
JOIN sellers FOR SYSTEM_TIME AS OF a.date_time AS s ON a.seller = s.seller;
