CREATE TABLE transactions (WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH ('connector' = 'generator', 'count' = '50000', 'seed' = '42');

CREATE TABLE per_minute WITH ('connector' = 'file', 'path' = 'per_minute.jsonl');
CREATE TABLE big WITH ('connector' = 'stdout');

CREATE VIEW priced AS
SELECT ts, card_id, country, ROUND(amount * 0.92, 2) AS amount_eur
FROM transactions
WHERE amount > 0;

INSERT INTO per_minute
SELECT country, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS minute,
       COUNT(*) AS n, SUM(amount_eur) AS total_eur, MAX(amount_eur) AS largest
FROM priced
GROUP BY country, TUMBLE(ts, INTERVAL '1' MINUTE)
HAVING COUNT(*) > 100;

INSERT INTO big
SELECT card_id, amount_eur, CASE WHEN country IN ('NG', 'KP') THEN 'review' ELSE 'ok' END AS action
FROM priced
WHERE amount_eur > 2000;
