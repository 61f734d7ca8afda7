-- Nexmark q8: monitor new users — people who opened an auction in the same 10-second window in
-- which they registered: each side's sellers per window, joined on the seller and the window.
SET name = 'nexmark-q8-sql';
SET batch_size = 8192;
SET parallelism = 2;

CREATE TABLE person (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'person', 'count' = 10000000);
CREATE TABLE auction (WATERMARK FOR date_time AS date_time)
WITH ('connector' = 'nexmark', 'kind' = 'auction', 'count' = 10000000);

CREATE VIEW new_people AS
SELECT id AS seller, name,
       TUMBLE_START(date_time, INTERVAL '10' SECOND) AS starttime,
       TUMBLE_END(date_time, INTERVAL '10' SECOND) AS endtime
FROM person
GROUP BY id, name, TUMBLE(date_time, INTERVAL '10' SECOND);

CREATE VIEW sellers AS
SELECT seller,
       TUMBLE_START(date_time, INTERVAL '10' SECOND) AS starttime,
       TUMBLE_END(date_time, INTERVAL '10' SECOND) AS endtime
FROM auction
GROUP BY seller, TUMBLE(date_time, INTERVAL '10' SECOND);

CREATE TABLE out WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT p.seller, p.name, p.starttime
FROM new_people AS p
JOIN sellers AS a
  ON p.seller = a.seller AND p.starttime = a.starttime AND p.endtime = a.endtime;
