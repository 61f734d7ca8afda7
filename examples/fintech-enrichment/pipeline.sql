-- The fintech enrichment of pipeline.toml, in SQL: every trade with the reference data of its
-- security and the market quote as they stood at the trade's time (two temporal joins).
SET name = 'fintech-enrichment-sql';
SET batch_size = 512;

CREATE TABLE trades (
    trade_id BIGINT, symbol VARCHAR, ts BIGINT, qty BIGINT, price DOUBLE,
    WATERMARK FOR ts AS ts
) WITH ('connector' = 'file', 'path' = 'data/trades.jsonl');

CREATE TABLE securities (
    symbol VARCHAR, listed BIGINT, name VARCHAR, sector VARCHAR, currency VARCHAR,
    WATERMARK FOR listed AS listed
) WITH ('connector' = 'file', 'path' = 'data/securities.csv');

CREATE TABLE quotes (
    symbol VARCHAR, quoted BIGINT, bid DOUBLE, ask DOUBLE,
    WATERMARK FOR quoted AS quoted
) WITH ('connector' = 'file', 'path' = 'data/quotes.jsonl');

CREATE TABLE out WITH ('connector' = 'file', 'path' = 'out/enriched.jsonl');

INSERT INTO out
SELECT t.trade_id, t.symbol, s.name, s.sector, s.currency, t.ts, t.qty, t.price, q.bid, q.ask,
       t.qty * t.price AS notional, t.price - (q.bid + q.ask) / 2 AS slippage, q.quoted
FROM trades AS t
JOIN securities FOR SYSTEM_TIME AS OF t.ts AS s ON t.symbol = s.symbol
JOIN quotes FOR SYSTEM_TIME AS OF t.ts AS q ON t.symbol = q.symbol;
