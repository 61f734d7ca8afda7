"""Generates this example's data (deterministic: a fixed seed). Run from this directory:
python3 generate.py. The files it writes are committed, so the example needs no Python."""
import json
import random

random.seed(11)
BASE = 1_767_258_000_000  # 2026-01-01T09:00:00Z
SECURITIES = [
    ("AAPL", "Apple", "Technology", "USD"), ("MSFT", "Microsoft", "Technology", "USD"),
    ("ASML", "ASML Holding", "Technology", "EUR"), ("SAP", "SAP", "Technology", "EUR"),
    ("NESN", "Nestle", "Consumer Staples", "CHF"), ("NOVN", "Novartis", "Health Care", "CHF"),
    ("HSBA", "HSBC", "Financials", "GBP"), ("BP", "BP", "Energy", "GBP"),
    ("7203", "Toyota", "Consumer Discretionary", "JPY"), ("TTE", "TotalEnergies", "Energy", "EUR"),
]

with open("securities.csv", "w") as f:
    f.write("symbol,listed,name,sector,currency\n")
    for s in SECURITIES:
        f.write(f"{s[0]},{BASE - 86_400_000},{s[1]},{s[2]},{s[3]}\n")
    # Reference data changes too: at 10:00 Novartis is reclassified.
    f.write(f"NOVN,{BASE + 3_600_000},Novartis,Pharmaceuticals,CHF\n")

price = {s[0]: random.uniform(50, 500) for s in SECURITIES}
quotes = []
t = BASE
for _ in range(3000):
    t += random.randint(200, 2400)
    sym = random.choice(SECURITIES)[0]
    price[sym] *= 1 + random.gauss(0, 0.0005)
    spread = price[sym] * 0.0004
    quotes.append({"symbol": sym, "quoted": t, "bid": round(price[sym] - spread / 2, 4),
                   "ask": round(price[sym] + spread / 2, 4)})
with open("quotes.jsonl", "w") as f:
    for q in quotes:
        f.write(json.dumps(q) + "\n")

t = BASE + 5000
last = {}
at = 0
with open("trades.jsonl", "w") as f:
    for i in range(1000):
        t += random.randint(1000, 7000)
        while at < len(quotes) and quotes[at]["quoted"] <= t:
            last[quotes[at]["symbol"]] = quotes[at]
            at += 1
        sym = random.choice(SECURITIES)[0]
        mid = price[sym] if sym not in last else (last[sym]["bid"] + last[sym]["ask"]) / 2
        f.write(json.dumps({"trade_id": i + 1, "symbol": sym, "ts": t,
                            "qty": random.choice([10, 25, 50, 100, 250, 1000]),
                            "price": round(mid * (1 + random.gauss(0, 0.0003)), 4)}) + "\n")
