-- Fraud detection in SQL: pipeline.toml's rules and outputs, with SQL where SQL reaches and the
-- rules agent where it ends. Which rules a card trips depends on its history, and a flagged
-- transaction does not join that history (a blocked payment teaches nothing about the card):
-- a recursion no SQL aggregate states. So the agent is called as a table function, keyed by
-- card (its state per card in RocksDB), its settings as named arguments; SQL reads its rows.
--
-- Build the agent first (scripts/setup does this), then:
--   sabot run examples/fraud-detection/pipeline.sql
-- out/flagged-sql.jsonl then holds the lines of out/flagged.jsonl (pipeline.toml's), in
-- another order.
SET name = 'fraud-detection-sql';
SET batch_size = 8192;
SET state = 'rocksdb';
SET parallelism = 2;
SET checkpoint.interval_ms = 1000;

-- One transaction every 10 ms of event time: a card transacts every ~20 s.
CREATE TABLE transactions (WATERMARK FOR ts AS ts)
WITH ('connector' = 'generator', 'count' = 1000000, 'fraud_rate' = 0.0005, 'cards' = 2000,
      'interval_ms' = 10, 'seed' = 7);

CREATE FUNCTION fraud_rules AS 'fraud_rules.wasm';

CREATE VIEW flagged_transactions AS
SELECT * FROM fraud_rules(
    TABLE transactions PARTITION BY card_id,
    over_limit_factor => 1.5,
    blacklisted_merchants => ARRAY['m99001', 'm99002', 'm99003'],
    high_risk_countries => ARRAY['KP', 'IR', 'SY'],
    velocity => JSON '{"max_transactions": 5, "within_ms": 1000}',
    amount_anomaly => JSON '{"min_history": 10, "stddevs": 4.0}',
    impossible_travel => JSON '{"within_ms": 1000}'
);

CREATE TABLE flagged WITH ('connector' = 'file', 'path' = 'out/flagged-sql.jsonl');
CREATE TABLE alerts WITH ('connector' = 'stdout');

INSERT INTO flagged SELECT * FROM flagged_transactions;

-- Only the fields an analyst looks at first.
INSERT INTO alerts
SELECT txn_id, card_id, amount, merchant_id, country, reason FROM flagged_transactions;
