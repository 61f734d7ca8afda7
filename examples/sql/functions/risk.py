"""The functions of ./src/lib.rs in Python, with the same results:
risk(amount Float64, country Utf8) -> Float64, tier(merchant_id Utf8) -> Utf8, and the aggregate
median(Float64) -> Float64.

Build: python -m sabot_agent.build risk.py -o sql_functions_py.wasm
Then in SQL: CREATE FUNCTION risk AS 'sql_functions_py.wasm';
"""

from sabot_agent import aggregate, float64, function, functions, utf8

HIGH_RISK = {"KP", "IR", "SY"}


@function(args=[float64, utf8], returns=float64)
def risk(amount, country):
    """The amount in thousands, plus 2 in a high-risk country, plus 0.5 above 5 000."""
    if amount is None or country is None:
        return None
    score = amount / 1000
    if country in HIGH_RISK:
        score += 2
    if amount > 5000:
        score += 0.5
    return score


@function(args=[utf8], returns=utf8)
def tier(merchant):
    """gold below m00100, silver below m01000, else bronze; unknown for an id not `m` and digits."""
    if merchant is None:
        return None
    digits = merchant[1:] if merchant.startswith("m") else ""
    if not digits or not all("0" <= c <= "9" for c in digits):
        return "unknown"
    n = int(digits)
    return "gold" if n < 100 else "silver" if n < 1000 else "bronze"


def middle(values):
    """The median (the mean of the two middle values for an even count); None without values."""
    if not values:
        return None
    values.sort()
    n = len(values)
    return values[n // 2] if n % 2 == 1 else (values[n // 2 - 1] + values[n // 2]) / 2


median = aggregate(input=float64, returns=float64, create=list, add=lambda values, v: values.append(v),
                   result=middle)

Functions = functions(risk=risk, tier=tier, median=median)
