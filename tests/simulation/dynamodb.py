"""DynamoDB's item API as the bridge uses it, in memory: GetItem, PutItem, UpdateItem, DeleteItem, Query
and Scan on one-key tables, with condition and update expressions evaluated as DynamoDB documents them.

Why not moto: it is faithful but slow here (~2 ms a call, two thirds of a simulated seed's time).
This model is held to moto by a differential test (tests/simulation/test_dynamodb_model.py) over the
expressions the bridge and Powertools write; ``--dynamodb moto`` runs the simulator on moto instead.

Supported: comparisons (= <> < <= > >=), AND, OR, NOT, parentheses, attribute_exists,
attribute_not_exists, contains, begins_with, size, BETWEEN, IN; SET with ``if_not_exists`` and ``+``/``-``,
REMOVE, ADD for numbers; ``#name`` and ``:value`` placeholders, checked for unknown and unused ones;
ReturnValues and ReturnValuesOnConditionCheckFailure. Paths are top-level attributes only.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from collections.abc import Iterator

_TOKEN = re.compile(
    r"\s*(?:(?P<name>#[A-Za-z0-9_]+)|(?P<value>:[A-Za-z0-9_]+)|(?P<op><>|<=|>=|[=<>(),+\-])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"}
MAX_ITEM_BYTES = 400 * 1024


def _error(code: str, operation: str, message: str, item: dict[str, Any] | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}
    if item is not None:
        response["Item"] = copy.deepcopy(item)
    return ClientError(response, operation)  # type: ignore[arg-type]


def _invalid(operation: str, message: str) -> ClientError:
    return _error("ValidationException", operation, message)


def _tokens(text: str, operation: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _invalid(operation, f"Invalid expression: syntax error near {text[position:]!r}")
        kind = match.lastgroup or "op"
        token = match.group(kind)
        if kind == "word" and token.upper() in _KEYWORDS:
            kind, token = "keyword", token.upper()
        found.append((kind, token))
        position = match.end()
    return found


@dataclass
class _Expressions:
    """The placeholders of one request, and which of them the expressions used."""

    names: dict[str, str]
    values: dict[str, Any]
    operation: str
    used_names: set[str] = field(default_factory=set)
    used_values: set[str] = field(default_factory=set)

    def name(self, kind: str, token: str) -> str:
        if kind == "name":
            if token not in self.names:
                raise _invalid(
                    self.operation,
                    f"An expression attribute name used in the document path is not defined; attribute name: {token}",
                )
            self.used_names.add(token)
            return self.names[token]
        return token

    def value(self, token: str) -> Any:
        if token not in self.values:
            raise _invalid(
                self.operation,
                f"An expression attribute value used in expression is not defined; attribute value: {token}",
            )
        self.used_values.add(token)
        return self.values[token]

    def check_all_used(self) -> None:
        unused_names = set(self.names) - self.used_names
        if unused_names:
            raise _invalid(self.operation, f"ExpressionAttributeNames unused in expressions: {sorted(unused_names)}")
        unused_values = set(self.values) - self.used_values
        if unused_values:
            raise _invalid(self.operation, f"ExpressionAttributeValues unused in expressions: {sorted(unused_values)}")


class _Parser:
    def __init__(self, text: str, expressions: _Expressions) -> None:
        self.tokens = _tokens(text, expressions.operation)
        self.position = 0
        self.expressions = expressions

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, token: str | None = None) -> tuple[str, str]:
        current = self.peek()
        if current is None or (token is not None and current[1] != token):
            raise _invalid(self.expressions.operation, f"Invalid expression: expected {token or 'a token'}")
        self.position += 1
        return current

    def done(self) -> None:
        if self.peek() is not None:
            raise _invalid(self.expressions.operation, f"Invalid expression: unexpected {self.peek()}")

    # --- conditions: OR < AND < NOT < comparison -----------------------------------------------------
    def condition(self) -> Any:
        left = self._and()
        while self.peek() == ("keyword", "OR"):
            self.take()
            right = self._and()
            left = ("or", left, right)
        return left

    def _and(self) -> Any:
        left = self._not()
        while self.peek() == ("keyword", "AND"):
            self.take()
            right = self._not()
            left = ("and", left, right)
        return left

    def _not(self) -> Any:
        if self.peek() == ("keyword", "NOT"):
            self.take()
            return ("not", self._not())
        return self._comparison()

    def _comparison(self) -> Any:
        if self.peek() == ("op", "("):
            self.take("(")
            inner = self.condition()
            self.take(")")
            return inner
        left = self.operand()
        current = self.peek()
        if current is not None and current[0] == "op" and current[1] in ("=", "<>", "<", "<=", ">", ">="):
            self.take()
            return ("compare", current[1], left, self.operand())
        if current == ("keyword", "BETWEEN"):
            self.take()
            low = self.operand()
            self.take("AND")
            return ("between", left, low, self.operand())
        if current == ("keyword", "IN"):
            self.take()
            self.take("(")
            options = [self.operand()]
            while self.peek() == ("op", ","):
                self.take(",")
                options.append(self.operand())
            self.take(")")
            return ("in", left, options)
        if left[0] == "call":
            return left
        raise _invalid(self.expressions.operation, "Invalid expression: a condition needs a comparison")

    def operand(self) -> Any:
        kind, token = self.take()
        if kind == "value":
            return ("value", self.expressions.value(token))
        if kind in ("name", "word"):
            if self.peek() == ("op", "("):
                self.take("(")
                arguments = [self.operand()]
                while self.peek() == ("op", ","):
                    self.take(",")
                    arguments.append(self.operand())
                self.take(")")
                return ("call", token, arguments)
            return ("path", self.expressions.name(kind, token))
        raise _invalid(self.expressions.operation, f"Invalid expression: unexpected {token!r}")

    # --- updates ---------------------------------------------------------------------------------------
    def update(self) -> list[tuple[str, str, Any]]:
        actions: list[tuple[str, str, Any]] = []
        seen_clauses: set[str] = set()
        while self.peek() is not None:
            _, clause = self.take()
            if clause not in ("SET", "REMOVE", "ADD") or clause in seen_clauses:
                raise _invalid(self.expressions.operation, f"Invalid UpdateExpression: {clause}")
            seen_clauses.add(clause)
            while True:
                kind, token = self.take()
                path = self.expressions.name(kind, token)
                if clause == "SET":
                    self.take("=")
                    value = self._set_value()
                    actions.append(("set", path, value))
                elif clause == "ADD":
                    actions.append(("add", path, self.operand()))
                else:
                    actions.append(("remove", path, None))
                if self.peek() != ("op", ","):
                    break
                self.take(",")
        paths = [path for _, path, _ in actions]
        if len(paths) != len(set(paths)):
            raise _invalid(
                self.expressions.operation,
                "Invalid UpdateExpression: Two document paths overlap",
            )
        return actions

    def _set_value(self) -> Any:
        left = self.operand()
        if self.peek() in (("op", "+"), ("op", "-")):
            _, sign = self.take()
            return ("arith", sign, left, self.operand())
        return left


def _type(value: Any) -> str:
    return next(iter(value)) if isinstance(value, dict) and len(value) == 1 else "?"


def _resolve(node: Any, item: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "value":
        return node[1]
    if kind == "path":
        return item.get(node[1])
    if kind == "call" and node[1] == "size":
        target = _resolve(node[2][0], item)
        if target is None:
            return None
        kind_of = _type(target)
        inner = target[kind_of]
        size = len(inner.encode("utf-8")) if kind_of == "S" else len(inner)
        return {"N": str(size)}
    if kind == "call" and node[1] == "if_not_exists":
        existing = _resolve(node[2][0], item)
        return existing if existing is not None else _resolve(node[2][1], item)
    raise ValueError(f"not an operand: {node!r}")


def _comparable(value: Any) -> Any:
    kind = _type(value)
    if kind == "N":
        return ("N", Decimal(value["N"]))
    if kind in ("S", "B"):
        return (kind, value[kind])
    return (kind, repr(value[kind]) if kind != "?" else value)


def _compare(operator: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False if operator != "<>" else not (left is None and right is None)
    a, b = _comparable(left), _comparable(right)
    if operator == "=":
        return bool(a == b)
    if operator == "<>":
        return bool(a != b)
    if a[0] != b[0] or a[0] not in ("N", "S", "B"):
        return False
    return bool({"<": a[1] < b[1], "<=": a[1] <= b[1], ">": a[1] > b[1], ">=": a[1] >= b[1]}[operator])


def _holds(node: Any, item: dict[str, Any]) -> bool:
    kind = node[0]
    if kind in ("or", "and"):
        left = _holds(node[1], item)
        return (left or _holds(node[2], item)) if kind == "or" else (left and _holds(node[2], item))
    if kind == "not":
        return not _holds(node[1], item)
    if kind == "compare":
        return _compare(node[1], _resolve(node[2], item), _resolve(node[3], item))
    if kind == "between":
        value = _resolve(node[1], item)
        return _compare(">=", value, _resolve(node[2], item)) and _compare("<=", value, _resolve(node[3], item))
    if kind == "in":
        value = _resolve(node[1], item)
        return any(_compare("=", value, _resolve(option, item)) for option in node[2])
    if kind == "call":
        return _function(node[1], [_resolve(argument, item) for argument in node[2]])
    raise ValueError(f"not a condition: {node!r}")


def _function(name: str, arguments: list[Any]) -> bool:
    if name == "attribute_exists":
        return arguments[0] is not None
    if name == "attribute_not_exists":
        return arguments[0] is None
    target, part = arguments[0], arguments[1] if len(arguments) > 1 else None
    if target is None or part is None or name not in ("contains", "begins_with"):
        return False
    kind = _type(target)
    if name == "begins_with":
        return kind in ("S", "B") and _type(part) == kind and bool(target[kind].startswith(part[kind]))
    if kind in ("S", "B"):
        return _type(part) == kind and part[kind] in target[kind]
    if kind in ("SS", "NS", "BS"):
        return next(iter(part.values())) in target[kind]
    return kind == "L" and part in target["L"]


def _size(item: dict[str, Any]) -> int:
    return len(repr(item).encode("utf-8", "surrogatepass"))


class _Meta:
    class _Events:
        def register(self, *args: Any, **kwargs: Any) -> None:
            """A botocore client's event hooks: nothing to hook here."""

    def __init__(self) -> None:
        self.events = self._Events()
        self.region_name = "us-east-1"
        self.endpoint_url = "https://dynamodb.us-east-1.amazonaws.com"


class DynamoDbModel:
    """One account's tables; the client methods take and return what boto3's do."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.keys: dict[str, str] = {}
        self.indexes: dict[tuple[str, str], tuple[str, str]] = {}
        self.meta = _Meta()

    def create_table(
        self,
        TableName: str,
        KeySchema: list[dict[str, str]],
        GlobalSecondaryIndexes: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        hash_keys = [k["AttributeName"] for k in KeySchema if k["KeyType"] == "HASH"]
        if len(KeySchema) != 1 or len(hash_keys) != 1:
            raise ValueError("the model keeps tables with one hash key only")
        self.tables[TableName] = {}
        self.keys[TableName] = hash_keys[0]
        for index in GlobalSecondaryIndexes or []:
            schema = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
            self.indexes[(TableName, index["IndexName"])] = (schema["HASH"], schema["RANGE"])
        return {"TableDescription": {"TableName": TableName, "TableStatus": "ACTIVE"}}

    def query(self, TableName: str, IndexName: str, **request: Any) -> dict[str, Any]:
        """A keys-only sparse index's partition, in sort-key order (equality on the partition key only)."""
        table = self._table(TableName, "Query")
        partition, sort = self.indexes[(TableName, IndexName)]
        names = dict(request.get("ExpressionAttributeNames") or {})
        values = dict(request.get("ExpressionAttributeValues") or {})
        name, _, placeholder = (part.strip() for part in request["KeyConditionExpression"].partition("="))
        wanted = values[placeholder]
        if names.get(name, name) != partition:
            raise _invalid("Query", "Query condition missed key schema element")
        found = sorted(
            (item for item in table.values() if item.get(partition) == wanted and sort in item),
            key=lambda item: item[sort]["S"],
        )
        start = (request.get("ExclusiveStartKey") or {}).get(sort)
        if start is not None:
            found = [item for item in found if item[sort]["S"] > start["S"]]
        if request.get("Select") == "COUNT":
            return {"Count": len(found)}
        limit = int(request.get("Limit") or len(found) or 1)
        page = found[:limit]
        key = self.keys[TableName]
        answer: dict[str, Any] = {
            "Items": [{k: copy.deepcopy(item[k]) for k in {key, partition, sort} if k in item} for item in page],
            "Count": len(page),
        }
        if len(found) > limit or (page and len(page) == limit):
            answer["LastEvaluatedKey"] = {key: copy.deepcopy(page[-1][key]), partition: copy.deepcopy(wanted)}
        return answer

    def get_item(self, TableName: str, Key: dict[str, Any], ConsistentRead: bool = False, **_: Any) -> dict[str, Any]:
        item = self._table(TableName, "GetItem").get(self._key(TableName, Key, "GetItem"))
        return {"Item": copy.deepcopy(item)} if item is not None else {}

    def put_item(self, TableName: str, Item: dict[str, Any], **request: Any) -> dict[str, Any]:
        table = self._table(TableName, "PutItem")
        key = self._key(TableName, {self.keys[TableName]: Item.get(self.keys[TableName])}, "PutItem")
        old = table.get(key)
        self._check(request, old, "PutItem")
        if _size(Item) > MAX_ITEM_BYTES:
            raise _invalid("PutItem", "Item size has exceeded the maximum allowed size")
        table[key] = copy.deepcopy(Item)
        return {"Attributes": copy.deepcopy(old)} if request.get("ReturnValues") == "ALL_OLD" and old else {}

    def delete_item(self, TableName: str, Key: dict[str, Any], **request: Any) -> dict[str, Any]:
        table = self._table(TableName, "DeleteItem")
        key = self._key(TableName, Key, "DeleteItem")
        old = table.get(key)
        self._check(request, old, "DeleteItem")
        table.pop(key, None)
        return {"Attributes": copy.deepcopy(old)} if request.get("ReturnValues") == "ALL_OLD" and old else {}

    def update_item(self, TableName: str, Key: dict[str, Any], **request: Any) -> dict[str, Any]:
        operation = "UpdateItem"
        table = self._table(TableName, operation)
        key = self._key(TableName, Key, operation)
        old = table.get(key)
        expressions = _Expressions(
            dict(request.get("ExpressionAttributeNames") or {}),
            dict(request.get("ExpressionAttributeValues") or {}),
            operation,
        )
        parser = _Parser(request.get("UpdateExpression", ""), expressions)
        actions = parser.update()
        parser.done()
        condition = self._condition(request, expressions)
        expressions.check_all_used()
        if condition is not None and not _holds(condition, old or {}):
            raise self._failed(request, old, operation)
        new = self._applied(actions, old, Key, self.keys[TableName], operation)
        if _size(new) > MAX_ITEM_BYTES:
            raise _invalid(operation, "Item size to update has exceeded the maximum allowed size")
        table[key] = new
        returned = request.get("ReturnValues", "NONE")
        if returned == "ALL_NEW":
            return {"Attributes": copy.deepcopy(new)}
        if returned == "ALL_OLD" and old is not None:
            return {"Attributes": copy.deepcopy(old)}
        if returned == "UPDATED_NEW":
            return {"Attributes": {p: copy.deepcopy(new[p]) for _, p, _ in actions if p in new}}
        return {}

    def scan(self, TableName: str, **_: Any) -> dict[str, Any]:
        items = [copy.deepcopy(item) for item in self._table(TableName, "Scan").values()]
        return {"Items": items, "Count": len(items)}

    # --- plumbing -----------------------------------------------------------------------------------------
    def _table(self, name: str, operation: str) -> dict[str, dict[str, Any]]:
        if name not in self.tables:
            raise _error("ResourceNotFoundException", operation, "Requested resource not found")
        return self.tables[name]

    def _key(self, table: str, key: dict[str, Any], operation: str) -> str:
        name = self.keys[table]
        value = key.get(name) or {}
        if set(key) != {name} or _type(value) != "S" or not value["S"]:
            raise _invalid(operation, "The provided key element does not match the schema")
        return str(value["S"])

    def _condition(self, request: dict[str, Any], expressions: _Expressions) -> Any:
        text = request.get("ConditionExpression")
        if not text:
            return None
        parser = _Parser(text, expressions)
        condition = parser.condition()
        parser.done()
        return condition

    def _check(self, request: dict[str, Any], old: dict[str, Any] | None, operation: str) -> None:
        expressions = _Expressions(
            dict(request.get("ExpressionAttributeNames") or {}),
            dict(request.get("ExpressionAttributeValues") or {}),
            operation,
        )
        condition = self._condition(request, expressions)
        expressions.check_all_used()
        if condition is not None and not _holds(condition, old or {}):
            raise self._failed(request, old, operation)

    @staticmethod
    def _failed(request: dict[str, Any], old: dict[str, Any] | None, operation: str) -> ClientError:
        returned = old if request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
        return _error("ConditionalCheckFailedException", operation, "The conditional request failed", returned)

    def _applied(
        self,
        actions: list[tuple[str, str, Any]],
        old: dict[str, Any] | None,
        key: dict[str, Any],
        hash_key: str,
        operation: str,
    ) -> dict[str, Any]:
        """The item after an update's actions (every value read from the item as it was)."""
        new = copy.deepcopy(old) if old is not None else copy.deepcopy(key)
        for action, path, value in actions:
            if path == hash_key:
                raise _invalid(operation, "Cannot update attribute id. This attribute is part of the key")
            if action == "remove":
                new.pop(path, None)
            elif action == "set":
                new[path] = self._evaluate(value, old or {}, operation)
            else:
                addend = _resolve(value, old or {})
                current = new.get(path, {"N": "0"})
                if _type(addend) != "N" or _type(current) != "N":
                    raise _invalid(operation, "ADD takes numbers here")
                new[path] = {"N": str(Decimal(current["N"]) + Decimal(addend["N"]))}
        return new

    @staticmethod
    def _evaluate(node: Any, item: dict[str, Any], operation: str) -> Any:
        if node[0] == "arith":
            left, right = _resolve(node[2], item), _resolve(node[3], item)
            if _type(left) != "N" or _type(right) != "N":
                raise _invalid(operation, "An operand in the update expression has an incorrect data type")
            total = Decimal(left["N"]) + (Decimal(right["N"]) if node[1] == "+" else -Decimal(right["N"]))
            return {"N": str(total)}
        value = _resolve(node, item)
        if value is None:
            raise _invalid(
                operation,
                "The provided expression refers to an attribute that does not exist in the item",
            )
        return copy.deepcopy(value)


def items(model: DynamoDbModel, table: str) -> Iterator[dict[str, Any]]:
    yield from model.tables.get(table, {}).values()
