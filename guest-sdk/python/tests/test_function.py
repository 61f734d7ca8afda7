"""Function modules (``sabot_agent.functions``): the protocol SQL's planner and runtime speak."""

import pytest

from sabot_agent import AgentError, RecordBatch, aggregate, float64, function, functions, int64, list_, utf8


@function(args=[float64, utf8], returns=float64)
def risk(amount, country):
    if amount is None or country is None:
        return None
    return amount / 1000 + (2 if country == "KP" else 0)


total = aggregate(input=float64, returns=float64, create=lambda: 0.0, add=lambda acc, v: acc + v,
                  result=lambda acc: acc or None)

Functions = functions(risk=risk, total=total)


def batch():
    return RecordBatch.from_columns(
        [("id", int64, [1, 2, 3]), ("amount", float64, [1500.0, None, 20.0]), ("country", utf8, ["KP", "NL", "FR"])]
    )


def test_the_result_is_appended_to_every_row():
    out = Functions({"function": "RISK", "args": ["amount", "country"], "output": "score"}).process(batch(), 0)
    assert out.column_names == ["id", "amount", "country", "score"]
    assert out.column("score") == [3.5, None, 0.02]
    assert out.field("score").nullable


def test_a_batch_without_rows_is_answered_with_the_result_column():
    empty = batch().take([])
    out = Functions({"function": "risk", "args": ["amount", "country"], "output": "score"}).process(empty, 0)
    assert out.num_rows == 0
    assert out.field("score").type == float64


@pytest.mark.parametrize(
    "config, message",
    [
        ({"function": "nope", "args": [], "output": "x"}, "this module has no function `nope` (functions: risk, total)"),
        ({"function": "risk", "args": ["amount"], "output": "x"},
         "risk takes 2 argument(s), risk(Float64, Utf8) -> Float64; the call gives 1"),
        ({"fn": "risk"}, 'a function module is configured with {"function": NAME, "args": [COLUMN, …], "output": COLUMN}'),
    ],
)
def test_a_mistaken_call_is_refused_as_invalid_config(config, message):
    with pytest.raises(AgentError) as e:
        Functions(config)
    assert e.value.kind == "invalid-config"
    assert message in e.value.message


def test_an_argument_of_another_type_is_refused_naming_the_signature():
    with pytest.raises(AgentError) as e:
        Functions({"function": "risk", "args": ["id", "country"], "output": "x"}).process(batch(), 0)
    assert e.value.kind == "invalid-input"
    assert e.value.message == "risk(Float64, Utf8) -> Float64: argument 1 (`id`) is Int64, expected Float64 (CAST it)"


def test_an_aggregate_folds_each_list_skipping_nulls():
    lists = RecordBatch.from_columns([("values", list_(float64), [[1.0, None, 3.0], None, []])])
    out = Functions({"function": "total", "args": ["values"], "output": "t"}).process(lists, 0)
    assert out.column("t") == [4.0, None, None]


def test_a_declaration_that_is_not_a_function_is_refused():
    with pytest.raises(TypeError, match="function `risk`: expected a @function"):
        functions(risk=lambda a: a)
    with pytest.raises(TypeError, match="argument 1: expected a sabot_agent type"):
        function(args=["Float64"], returns=float64)(lambda a: a)
