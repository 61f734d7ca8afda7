"""Functions that SQL calls: ``CREATE FUNCTION risk AS 'fx@1.0.0'`` makes ``risk(amount,
country)`` usable in a SQL pipeline, and ``CREATE AGGREGATE median AS 'fx@1.0.0'`` makes
``median(amount)`` an aggregate of windowed ``GROUP BY``\\ s::

    from sabot_agent import aggregate, float64, function, functions, utf8

    @function(args=[float64, utf8], returns=float64)
    def risk(amount, country):
        return None if amount is None or country is None else amount / 1000

    median = aggregate(input=float64, returns=float64, create=list, add=lambda acc, v: acc.append(v),
                       result=lambda acc: sorted(acc)[len(acc) // 2] if acc else None)

    Functions = functions(risk=risk, median=median)

Each call site runs as an agent of the module, configured with ``{"function": NAME, "args":
[COLUMN, …], "output": COLUMN}``; it returns every row it got with the result appended as
``output``, one crossing per batch. The SQL planner learns the result type by sending a batch
with no rows, and a call whose argument types differ is refused then, with the signature in the
message — the protocol of the Rust SDK's ``sabot_sdk::function``.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence

from .arrow import _LIST, Column, DataType, Field, RecordBatch, bool_, float64, int32, int64, list_, utf8
from .errors import AgentError

# The types a function takes and returns, by the names the host (arrow-rs) gives them.
_NAMES = {float64: "Float64", int64: "Int64", int32: "Int32", utf8: "Utf8", bool_: "Boolean"}


def _type_name(t: DataType) -> str:
    if t.kind == _LIST:
        return f"List<{_type_name(t.child.type)}>"
    return _NAMES.get(t, repr(t))


def _same_type(a: DataType, b: DataType) -> bool:
    """As the host compares them: a list by its element type, whatever its field's name."""
    if a.kind == _LIST or b.kind == _LIST:
        return a.kind == b.kind and _same_type(a.child.type, b.child.type)
    return a == b


class Function:
    """A function SQL calls: its argument types, its result type, and ``call`` — one row's
    arguments (``None`` for NULL) to its result (``None`` for NULL)."""

    def __init__(self, args: Sequence[DataType], returns: DataType, call: Callable[..., Any]):
        for i, t in enumerate(list(args) + [returns]):
            if not isinstance(t, DataType):
                where = "the result" if i == len(args) else f"argument {i + 1}"
                raise TypeError(f"{where}: expected a sabot_agent type (float64, int64, int32, utf8, bool_, list_(…)), got {t!r}")
        self.args = list(args)
        self.returns = returns
        self.call = call

    def describe(self, name: str) -> str:
        return f"{name}({', '.join(_type_name(t) for t in self.args)}) -> {_type_name(self.returns)}"


def function(args: Sequence[DataType], returns: DataType) -> Callable[[Callable[..., Any]], Function]:
    """Declares a scalar function called once per row: ``@function(args=[float64], returns=utf8)``."""
    return lambda call: Function(args, returns, call)


def aggregate(input: DataType, returns: DataType, create: Callable[[], Any],
              add: Callable[[Any, Any], Any], result: Callable[[Any], Any]) -> Function:
    """An aggregate SQL's ``CREATE AGGREGATE`` calls: the planner collects each group's values (of
    each window) into a list, and this folds each list — ``create()``, then ``add(acc, value)`` for
    every non-null value in arrival order (returning the new accumulator, or ``None`` to keep the
    one it changed), then ``result(acc)`` (``None`` for NULL)."""

    def fold(values: Optional[List[Any]]) -> Any:
        if values is None:
            return None
        acc = create()
        for v in values:
            if v is not None:
                nxt = add(acc, v)
                if nxt is not None:
                    acc = nxt
        return result(acc)

    return Function([list_(input)], returns, fold)


def functions(**declared: Function) -> type:
    """The agent of a module of functions, by the names SQL calls them (case-insensitively)::

        Functions = functions(risk=risk, tier=tier, median=median)
    """
    import sys

    from . import Agent

    for name, f in declared.items():
        if not isinstance(f, Function):
            raise TypeError(f"function `{name}`: expected a @function or an aggregate(…), got {type(f).__name__}")
    names = ", ".join(declared)

    class Functions(Agent):
        def __init__(self, config: Dict[str, Any]) -> None:
            if (
                not isinstance(config, dict)
                or set(config) != {"function", "args", "output"}
                or not isinstance(config["function"], str)
                or not isinstance(config["args"], list)
                or not all(isinstance(a, str) for a in config["args"])
                or not isinstance(config["output"], str)
            ):
                raise AgentError.invalid_config(
                    'a function module is configured with {"function": NAME, "args": [COLUMN, …], "output": COLUMN}, '
                    f"got {config!r} (functions: {names})"
                )
            wanted = config["function"]
            found = next((n for n in declared if n.lower() == wanted.lower()), None)
            if found is None:
                raise AgentError.invalid_config(f"this module has no function `{wanted}` (functions: {names})")
            f = declared[found]
            if len(f.args) != len(config["args"]):
                raise AgentError.invalid_config(
                    f"{wanted} takes {len(f.args)} argument(s), {f.describe(wanted)}; the call gives {len(config['args'])}"
                )
            self.name, self.function = wanted, f
            self.columns: List[str] = config["args"]
            self.output: str = config["output"]

        def process(self, batch: RecordBatch, port: int):
            name, f = self.name, self.function
            columns = []
            for i, column in enumerate(self.columns):
                try:
                    field = batch.field(column)
                except KeyError:
                    raise AgentError.invalid_input(f"{name}: no column `{column}` for argument {i + 1} in the batch") from None
                if not _same_type(field.type, f.args[i]):
                    raise AgentError.invalid_input(
                        f"{f.describe(name)}: argument {i + 1} (`{column}`) is {_type_name(field.type)}, "
                        f"expected {_type_name(f.args[i])} (CAST it)"
                    )
                columns.append(batch.column(column))
            call = f.call
            results = [call(*row) for row in zip(*columns)] if columns else [call() for _ in range(batch.num_rows)]
            # Every row with the result appended (a column of the output's name replaced), kept
            # even without rows: the planner's question is answered by the schema.
            keep = [i for i, field in enumerate(batch.schema) if field.name != self.output]
            schema = [batch.schema[i] for i in keep] + [Field(self.output, f.returns, True)]
            columns = [batch.columns[i] for i in keep] + [Column.from_values(f.returns, results, self.output)]
            return RecordBatch(schema, columns, batch.num_rows)

    Functions.__module__ = sys._getframe(1).f_globals.get("__name__", Functions.__module__)
    return Functions
