-- Transactions scored by functions written as an agent (examples/sql/functions, Rust; the
-- same functions in JavaScript are functions/risk.js). scripts/setup builds the module:
--   cargo build --release --target wasm32-wasip2 -p sql-functions
--   cp "$CARGO_TARGET_DIR"/wasm32-wasip2/release/sql_functions.wasm examples/sql/
-- then: sabot run examples/sql/scoring.sql

CREATE TABLE transactions
WITH ('connector' = 'generator', 'count' = '20000', 'seed' = '7', 'fraud_rate' = '0.01');

CREATE TABLE review WITH ('connector' = 'stdout');

CREATE FUNCTION risk AS 'sql_functions.wasm';
CREATE FUNCTION tier AS 'sql_functions.wasm';

INSERT INTO review
SELECT txn_id, card_id, amount, country, merchant_id,
       risk(amount, country) AS score, tier(merchant_id) AS tier
FROM transactions
WHERE risk(amount, country) > 2.5;
