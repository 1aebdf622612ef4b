"""The SQL each rule becomes: an expression the source evaluates inside ``COPY (SELECT ...) TO STDOUT``.

Deterministic rules (``hash``, ``fake_email``, and any rule on a key that other columns reference) are keyed
pseudonyms: HMAC-SHA256 under the key of :mod:`tether.sync.keys`, with a prefix per purpose so that a hash and
a fake e-mail of one value cannot be matched. Everything else is random (``random()``) on every sync, so
low-entropy values (phones, dates, small numbers) have nothing to enumerate. Outputs fit the column: its type
(cast back), its length (``varchar(n)``), its case rules (citext, ``lower()`` joins).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg import sql

from tether.errors import ConfigError
from tether.sync.fakes import DEFAULT_LOCALE, POOLS, Pool
from tether.sync.keys import PseudonymKey, per_sync_key
from tether.sync.rules import POOL_KINDS, SCRUB_KINDS, Rule

TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})
INTEGER_BITS = {"int2": 16, "int4": 32, "int8": 64}
DATE_TYPES = frozenset({"date", "timestamp", "timestamptz"})
HASH_HEX = 32  # default length of a text hash (128 bits)
EMAIL_HEX = 32
MIN_UNIQUE_HEX = 16  # 64 bits: the least a pseudonym of a unique column may keep
DEFAULT_DOMAIN = "example.com"
# Rules whose result depends only on the value and the key (never on chance): the only ones that keep joins.
KEYED_KINDS = frozenset({"hash", "fake_email"})
RANDOM_KINDS = frozenset({"random_date", "random_int", "random_number", "shift_date", "noise", "inet",
                          "fake_phone", "fake_iban", "fake_name", "fake_first_name", "fake_last_name", "fake_city",
                          "fake_postcode", "fake_address"})


@dataclass(frozen=True)
class Shape:
    """What a rule's output must fit: the column, json value or array element it replaces."""

    type_sql: str  # the type to cast back to, as PostgreSQL writes it
    type_name: str  # the base type (through a domain): text, int4, uuid, ...
    category: str  # pg_type.typcategory of the base type
    max_length: int | None = None  # varchar(n), char(n)
    element: Shape | None = None  # an array's elements

    @property
    def textual(self) -> bool:
        return self.type_name in TEXT_TYPES

    @property
    def citext(self) -> bool:
        return self.type_name == "citext"


TEXT_SHAPE = Shape("text", "text", "S")


@dataclass(frozen=True)
class ResolvedRule(Rule):
    """A rule bound to its column and the sync's key: everything needed to write its SQL."""

    shape: Shape = TEXT_SHAPE
    key: PseudonymKey = field(default_factory=per_sync_key, repr=False, compare=False)
    locale: str = DEFAULT_LOCALE
    deterministic: bool = False  # forced keyed: other columns reference this one
    case_insensitive: bool = False  # the pseudonym ignores case (citext, fake_email): lower() joins still match
    canonical: Shape | None = None  # a referenced key's shape: its pseudonyms' format (a uuid key in a text column)
    origin: str = ""  # why this column has this rule when the file does not say so

    def describe(self) -> str:
        text = super().describe()
        return f"{text} ({self.origin})" if self.origin else text

    @property
    def keyed(self) -> bool:
        """True when the output is a keyed pseudonym (the same on every row, table and, with a server key, sync)."""
        return self.kind in KEYED_KINDS or (self.deterministic and self.kind != "keep")

    def inner(self, rule: Rule, shape: Shape) -> ResolvedRule:
        """A rule nested in this one (a json path's, an array element's), on its own shape."""
        if isinstance(rule, ResolvedRule):  # already bound: a same_as resolved to its key's rule
            return replace(rule, shape=shape)
        return ResolvedRule(rule.kind, rule.options, shape=shape, key=self.key, locale=self.locale,
                            case_insensitive=_case_insensitive(rule, shape))

    def max_output(self) -> int | None:
        """The longest text this rule can produce (None: as long as its input, or not text)."""
        return max_output(self)


def _case_insensitive(rule: Rule, shape: Shape) -> bool:
    if shape.citext:
        return True
    if rule.kind == "fake_email":
        return not rule.option("case_sensitive", False)
    return bool(rule.option("case_insensitive", False))


def bind(rule: Rule, shape: Shape, key: PseudonymKey, *, locale: str = DEFAULT_LOCALE, deterministic: bool = False,
         canonical: Shape | None = None, origin: str = "") -> ResolvedRule:
    return ResolvedRule(rule.kind, rule.options, shape=shape, key=key, locale=locale, deterministic=deterministic,
                        case_insensitive=_case_insensitive(rule, canonical or shape), canonical=canonical,
                        origin=origin)


# ---------------------------------------------------------------------------------------------------------------
# Pieces


def _lit(value: Any) -> sql.Composable:
    return sql.Literal(value)


def _array(values: tuple[str, ...]) -> sql.Composable:
    return sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(sql.Literal(value) for value in values))


def _key_input(rule: ResolvedRule, value: sql.Composable, purpose: str) -> sql.Composable:
    """The text the key's HMAC reads: a purpose prefix, then the value (lower-cased when case is ignored)."""
    text = sql.SQL("({})::text").format(value)
    if rule.case_insensitive:
        text = sql.SQL("lower({})").format(text)
    return sql.SQL("{} || {}").format(_lit(f"tether:{purpose}:"), text)


def _digest(rule: ResolvedRule, value: sql.Composable, purpose: str) -> sql.Composable:
    return rule.key.prf(_key_input(rule, value, purpose))


def _number(digest: sql.Composable, offset: int = 0) -> sql.Composable:
    """A non-negative 56-bit integer from 7 bytes of a 32-byte digest."""
    return sql.SQL("('x' || encode(substring({}, {}, 7), 'hex'))::bit(56)::bigint").format(digest, _lit(1 + offset))


def _pick(rule: ResolvedRule, value: sql.Composable, values: tuple[str, ...], purpose: str,
          variant: str | None) -> sql.Composable:
    """One of ``values``: chosen by the key for a deterministic rule, at random otherwise."""
    if variant is not None:  # the shortest or longest value: what a CHECK or a length sees at the extremes
        ordered = sorted(values, key=len)
        return _lit(ordered[0] if variant == "low" else ordered[-1])
    if rule.deterministic or rule.option("consistent", False):
        index: sql.Composable = sql.SQL("{} % {}").format(_number(_digest(rule, value, purpose)), _lit(len(values)))
    else:
        index = sql.SQL("floor(random() * {})::int").format(_lit(len(values)))
    return sql.SQL("({})[1 + {}]").format(_array(values), index)


def _random_digits(rule: ResolvedRule, value: sql.Composable, count: sql.Composable, purpose: str,
                   variant: str | None) -> sql.Composable:
    """``count`` (an SQL integer, at most 15) decimal digits: keyed or random."""
    if variant is not None:
        return sql.SQL("repeat({}, {})").format(_lit("0" if variant == "low" else "9"), count)
    if rule.deterministic or rule.option("consistent", False):
        number: sql.Composable = sql.SQL("({} % 1000000000000000)").format(_number(_digest(rule, value, purpose)))
    else:
        number = sql.SQL("floor(random() * 1e15)::bigint")
    return sql.SQL("right(repeat('0', 15) || {}::text, {})").format(number, count)


def _pool(rule: ResolvedRule) -> Pool:
    return POOLS[rule.option("locale") or rule.locale]


# ---------------------------------------------------------------------------------------------------------------
# Rules


def rule_sql(rule: ResolvedRule, value: sql.Composable, variant: str | None = None) -> sql.Composable:
    """The expression replacing ``value`` (of ``rule.shape``), not yet cast back to the column's type.

    ``variant`` ("low" or "high") gives the extremes of a random rule instead of a random value: a CHECK
    constraint holding at both is checked before the copy.
    """
    builder = _BUILDERS.get(rule.kind)
    if builder is None:  # pragma: no cover - every kind has a builder; same_as is resolved away first
        raise ConfigError(f"rule {rule.kind} cannot be written as SQL")
    expression = builder(rule, value, variant)
    if rule.kind in POOL_KINDS:  # drawn at random: NULL must stay NULL explicitly
        expression = sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(value, expression)
    length = rule.shape.max_length
    if length is not None and rule.kind not in ("keep", "null") and (rule.max_output() or length + 1) > length:
        expression = sql.SQL("left({}, {})").format(expression, _lit(length))
    return expression


def _as_c_text(value: sql.Composable) -> sql.Composable:
    """The value as text in the "C" collation: regular expressions refuse a nondeterministic one."""
    return sql.SQL('(({})::text COLLATE "C")').format(value)


def column_sql(rule: ResolvedRule, value: sql.Composable, variant: str | None = None) -> sql.Composable:
    """The expression for a whole column, cast back to its type (NULL stays NULL unless the rule says null)."""
    if rule.kind == "keep":
        return value
    return sql.SQL("({})::{}").format(rule_sql(rule, value, variant), sql.SQL(rule.shape.type_sql))


def _keep(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    return value


def _null(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    return sql.SQL("NULL")


def _fixed(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(value, _lit(literal_text(rule.option("value"))))


def literal_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _mask(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    first, last, char = rule.option("keep_first"), rule.option("keep_last"), rule.option("char")
    text = sql.SQL("({})::text").format(value)
    return sql.SQL(
        "CASE WHEN {v} IS NULL THEN NULL WHEN length({v}) <= {keep} THEN repeat({c}, length({v})) "
        "ELSE left({v}, {first}) || repeat({c}, length({v}) - {keep}) || right({v}, {last}) END").format(
        v=text, keep=_lit(first + last), c=_lit(char), first=_lit(first), last=_lit(last))


def hash_hex_length(rule: ResolvedRule) -> int:
    """Hex digits a text hash keeps: as asked, or 32, and never more than the column holds."""
    wanted = rule.option("length") or HASH_HEX
    return min(wanted, rule.shape.max_length) if rule.shape.max_length else wanted


def email_hex_length(rule: ResolvedRule) -> int:
    """Hex digits in ``user_<hex>@domain``: 32, or what fits the column."""
    domain = rule.option("domain") or DEFAULT_DOMAIN
    if rule.shape.max_length is None:
        return EMAIL_HEX
    return max(0, min(EMAIL_HEX, rule.shape.max_length - len("user_@") - len(domain)))


def _hash(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    shape = rule.canonical or rule.shape  # a text column holding a uuid key's values gets uuid-shaped text
    if shape.type_name == "uuid":
        uuid = sql.SQL("encode(substring({}, 1, 16), 'hex')::uuid").format(_digest(rule, value, "hash"))
        return uuid if rule.shape.type_name == "uuid" else sql.SQL("({})::text").format(uuid)
    if shape.type_name in INTEGER_BITS:
        number = _feistel(rule, sql.SQL("({})::bigint").format(value), INTEGER_BITS[shape.type_name])
        return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(value, number)
    return sql.SQL("left(encode({}, 'hex'), {})").format(_digest(rule, value, "hash"), _lit(hash_hex_length(rule)))


def _feistel(rule: ResolvedRule, value: sql.Composable, bits: int) -> sql.Composable:
    """A keyed permutation of the integer's low ``bits - 2`` bits (its sign and top bit stay): injective, so
    unique keys stay unique, and references to them follow. Four Feistel rounds, each half keyed by HMAC.
    """
    width = bits - 2
    half = width // 2
    mask = (1 << half) - 1
    low = (1 << width) - 1

    def round_function(number: int, half_value: str) -> sql.Composable:
        text = sql.SQL("{} || ({})::text").format(_lit(f"tether:feistel:{number}:"), sql.SQL(half_value))
        return sql.SQL("({} & {})").format(_number(rule.key.prf(text)), _lit(mask))

    # Each round is its own subquery, so every HMAC runs once per value however the rounds nest.
    return sql.SQL(
        "(SELECT high + ((r3 << {half}) | r4) FROM (SELECT v - (v & {low}) AS high, ((v & {low}) >> {half}) AS l0, "
        "((v & {low}) & {mask}) AS r0 FROM (SELECT {value} AS v) AS input) AS s0 "
        "CROSS JOIN LATERAL (SELECT l0 # {f1} AS r1) AS s1 "
        "CROSS JOIN LATERAL (SELECT r0 # {f2} AS r2) AS s2 "
        "CROSS JOIN LATERAL (SELECT r1 # {f3} AS r3) AS s3 "
        "CROSS JOIN LATERAL (SELECT r2 # {f4} AS r4) AS s4)").format(
        half=_lit(half), low=_lit(low), mask=_lit(mask), value=value,
        f1=round_function(1, "r0"), f2=round_function(2, "r1"), f3=round_function(3, "r2"),
        f4=round_function(4, "r3"))


def _fake_email(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    domain = rule.option("domain") or DEFAULT_DOMAIN
    return sql.SQL("'user_' || left(encode({}, 'hex'), {}) || {}").format(
        _digest(rule, value, "email"), _lit(email_hex_length(rule)), _lit("@" + domain))


def _fake_name(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    pool = _pool(rule)
    return sql.SQL("{} || ' ' || {}").format(_pick(rule, value, pool.first_names, "first", variant),
                                             _pick(rule, value, pool.last_names, "last", variant))


def _fake_first_name(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    return _pick(rule, value, _pool(rule).first_names, "first", variant)


def _fake_last_name(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    return _pick(rule, value, _pool(rule).last_names, "last", variant)


def _fake_city(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    return _pick(rule, value, _pool(rule).cities, "city", variant)


def _fake_postcode(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    pool = _pool(rule)
    codes = pool.postcodes
    if not rule.shape.textual:  # an integer column: French codes only, which are digits
        codes = tuple(code for code in POOLS["fr"].postcodes if code.isdigit())
    return _pick(rule, value, codes, "postcode", variant)


def _fake_address(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    number = (_lit("1") if variant == "low" else _lit("199") if variant == "high"
              else sql.SQL("(1 + {} % 199)::text").format(_number(_digest(rule, value, "number")))
              if rule.deterministic or rule.option("consistent", False)
              else sql.SQL("(1 + floor(random() * 199))::int::text"))
    return sql.SQL("{} || ' ' || {}").format(number, _pick(rule, value, _pool(rule).streets, "street", variant))


def _fake_phone(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    """Digits replaced, the rest of the format kept ("+33 6 12 34 56 78" → "+33 6 81 07 45 92").

    The leading digits a number needs to keep its kind (country code and the mobile/landline digit, or the
    French "06") stay: all but the last eight, or the first one of a short number. Written with translate,
    replace and format (every digit of the source becomes a %s of a template filled with the new digits):
    about 5 µs a value, where a per-value subquery took 30.
    """
    text = _as_c_text(value)
    count = sql.SQL("(length({t}) - length(translate({t}, '0123456789', '')))").format(t=text)
    keep = sql.SQL("greatest(1, {} - 8)").format(count)
    template = sql.SQL("replace(translate(replace({t}, '%', '%%'), '0123456789', repeat(chr(1), 10)), chr(1), "
                       "'%s')").format(t=text)
    digits = sql.SQL("left(regexp_replace({t}, '[^0-9]', '', 'g'), {keep}) || {fresh}").format(
        t=text, keep=keep, fresh=_random_digits(rule, value, sql.SQL("({} - {})").format(count, keep), "phone",
                                                variant))
    return sql.SQL(
        "CASE WHEN {t} IS NULL THEN NULL WHEN {t} = '' THEN '' WHEN {n} < 6 THEN '06' || {invented} "
        "ELSE format({template}, VARIADIC string_to_array({digits}, NULL)) END").format(
        t=text, n=count, invented=_random_digits(rule, value, _lit(8), "phone", variant), template=template,
        digits=digits)


def _fake_iban(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    """A French IBAN with a valid check (FR, 2 check digits, 23 digits), grouped by four when the source is."""
    text = _as_c_text(value)
    body = sql.SQL("{} || {}").format(_random_digits(rule, value, _lit(15), "iban1", variant),
                                      _random_digits(rule, value, _lit(8), "iban2", variant))
    return sql.SQL(
        "(SELECT CASE WHEN t IS NULL THEN NULL WHEN strpos(t, ' ') > 0 "
        "THEN rtrim(regexp_replace(iban, '(.{{4}})', '\\1 ', 'g')) ELSE iban END "
        "FROM (SELECT t, 'FR' || lpad((98 - (bban || '152700')::numeric % 97)::text, 2, '0') || bban AS iban "
        "FROM (SELECT {text} AS t, {body} AS bban) AS v0) AS v1)").format(text=text, body=body)


def _random_date(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    low, high = rule.option("from"), rule.option("to")
    span = (high - low).days
    offset: sql.Composable = (_lit(0) if variant == "low" else _lit(span) if variant == "high"
                              else sql.SQL("floor(random() * {})::int").format(_lit(span + 1)))
    day = sql.SQL("{}::date + {}").format(_lit(low.isoformat()), offset)
    if rule.shape.type_name != "date":
        seconds = (_lit(0) if variant else sql.SQL("floor(random() * 86400)"))
        day = sql.SQL("{} + {} * interval '1 second'").format(day, seconds)
    return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(value, day)


def _random_int(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    low, high = rule.option("min"), rule.option("max")
    number = (_lit(low) if variant == "low" else _lit(high) if variant == "high"
              else sql.SQL("({} + floor(random() * {}))::bigint").format(_lit(low), _lit(high - low + 1)))
    return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(value, number)


def _random_number(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    low, high = rule.option("min"), rule.option("max")
    number = (_lit(str(low)) if variant == "low" else _lit(str(high)) if variant == "high"
              else sql.SQL("round(({}::numeric + random()::numeric * {}::numeric), {})").format(
                  _lit(str(low)), _lit(str(high - low)), _lit(rule.option("decimals", 2))))
    return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE ({})::numeric END").format(value, number)


def _shift_date(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    """Moved by 1 to N days, earlier or later (never 0: a shifted date is never the real one)."""
    days = rule.option("days")
    shift: sql.Composable = (_lit(-days) if variant == "low" else _lit(days) if variant == "high" else sql.SQL(
        "((1 + floor(random() * {}))::int * CASE WHEN random() < 0.5 THEN -1 ELSE 1 END)").format(_lit(days)))
    if rule.shape.type_name == "date":
        return sql.SQL("{} + {}").format(value, shift)
    return sql.SQL("{} + {} * interval '1 day'").format(value, shift)


def _generalize(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    to, step = rule.option("to"), rule.option("step")
    if step is not None:
        return sql.SQL("floor(({})::numeric / {}) * {}").format(value, _lit(str(step)), _lit(str(step)))
    if to in ("year", "month"):
        return sql.SQL("date_trunc({}, {})").format(_lit(to), value)
    # French postcodes down to their département: 75011 → 75000, 2A004 → 2A000, overseas 97411 → 97400.
    if not rule.shape.textual:
        return sql.SQL("CASE WHEN {v} >= 97000 THEN {v} / 100 * 100 ELSE {v} / 1000 * 1000 END").format(v=value)
    text = _as_c_text(value)
    return sql.SQL(
        "CASE WHEN {t} ~ '^9[78][0-9]{{3}}$' THEN left({t}, 3) || '00' "
        "ELSE left({t}, 2) || regexp_replace(substr({t}, 3), '[0-9A-Za-z]', '0', 'g') END").format(t=text)


def _noise(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    factor = {None: "(random() * 2 - 1)", "low": "-1", "high": "1"}[variant]
    relative, absolute = rule.option("relative"), rule.option("absolute")
    number = sql.SQL("({})::numeric").format(value)
    if relative is not None:
        moved = sql.SQL("{n} * (1 + {f} * {r})").format(n=number, f=sql.SQL(factor), r=_lit(str(relative)))
    else:
        moved = sql.SQL("{n} + {f} * {a}").format(n=number, f=sql.SQL(factor), a=_lit(str(absolute)))
    if rule.shape.type_name in INTEGER_BITS:
        moved = sql.SQL("round({})").format(moved)
    return moved


def _inet(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    """A random address in the same network: the first bits kept (IPv4 /16 by default, IPv6 /32), the rest drawn.

    IPv6 keeps at most 64 bits and draws the last 48 (the ones between stay 0): enough to look real, nothing of
    the host. The netmask length is kept.
    """
    v4, v6 = rule.option("keep_prefix"), rule.option("keep_prefix_v6")
    draw = {None: "floor(random() * {})::bigint", "low": "0 * {}", "high": "({} - 1)::bigint"}[variant]
    v4_draw = sql.SQL(draw).format(_lit(2 ** (32 - v4)))
    v6_draw = sql.SQL(draw).format(_lit(2 ** 48))
    return sql.SQL(
        "CASE WHEN {v} IS NULL THEN NULL WHEN family({v}) = 4 "
        "THEN set_masklen(host(network(set_masklen({v}, {p4})))::inet + {d4}, masklen({v})) "
        "ELSE set_masklen(host(network(set_masklen({v}, {p6})))::inet + {d6}, masklen({v})) END").format(
        v=value, p4=_lit(v4), d4=v4_draw, p6=_lit(min(v6, 64)), d6=v6_draw)


# Free text: each kind of personal value found inside it becomes a placeholder. The patterns match a value
# standing on its own, not inside a longer word (a hex digest is not a phone number).
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![0-9A-Za-z+])", r"(?![0-9A-Za-z])"
SCRUB_PATTERNS = {
    "email": r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "iban": _EDGE_BEFORE + r"[A-Za-z]{2}[0-9]{2}( ?[A-Za-z0-9]{4}){2,7}( ?[A-Za-z0-9]{1,4})?" + _EDGE_AFTER,
    "card": _EDGE_BEFORE + r"[0-9]{4}([ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}" + _EDGE_AFTER,
    "nir": _EDGE_BEFORE + r"[12] ?[0-9]{2} ?[0-9]{2} ?(2A|2B|[0-9]{2}) ?[0-9]{3} ?[0-9]{3}( ?[0-9]{2})?" + _EDGE_AFTER,
    "phone": _EDGE_BEFORE + r"((\+|00)[1-9][0-9]{0,2}[ .-]?(\(0\)[ .-]?)?[0-9]([ .-]?[0-9]){6,12}"
                            r"|0[1-9]([ .-]?[0-9]{2}){4}|\(?[2-9][0-9]{2}\)[ .-]?[0-9]{3}[ .-]?[0-9]{4})" + _EDGE_AFTER,
    "ip": _EDGE_BEFORE + r"([0-9]{1,3}\.){3}[0-9]{1,3}" + _EDGE_AFTER,
}


def _scrub(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    text: sql.Composable = _as_c_text(value)
    for kind in SCRUB_KINDS:  # e-mails first: they hold digits the others could take for a number
        if kind in rule.option("kinds"):
            text = sql.SQL("regexp_replace({}, {}, {}, 'g')").format(text, _lit(SCRUB_PATTERNS[kind]),
                                                                     _lit(f"[{kind}]"))
    return text


def _each(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    element = rule.shape.element or TEXT_SHAPE
    inner = rule.inner(rule.option("rule"), element)
    item = column_sql(inner, sql.Identifier("element"), variant)
    return sql.SQL("CASE WHEN {v} IS NULL THEN NULL ELSE ARRAY(SELECT {item} FROM unnest({v}) WITH ORDINALITY "
                   "AS elements(element, position) ORDER BY position) END").format(v=value, item=item)


def _json(rule: ResolvedRule, value: sql.Composable, variant: str | None) -> sql.Composable:
    document: sql.Composable = sql.SQL("({})::jsonb").format(value)
    for path, inner in rule.option("paths"):
        document = json_apply(rule, document, tuple(path.split(".")), inner, variant)
    return document


def json_apply(rule: ResolvedRule, document: sql.Composable, path: tuple[str, ...], inner: Rule,
               variant: str | None) -> sql.Composable:
    """``document`` with the rule applied at ``path`` (``*`` = each array element); absent paths change nothing."""
    here = sql.Identifier("j")
    if not path:
        return sql.SQL("(SELECT {} FROM (SELECT {} AS j) AS json_value)").format(
            _json_leaf(rule, here, inner, variant), document)
    head, rest = path[0], path[1:]
    if head == "*":
        changed = sql.SQL(
            "CASE WHEN jsonb_typeof(j) = 'array' THEN (SELECT coalesce(jsonb_agg({} ORDER BY position), '[]') "
            "FROM jsonb_array_elements(j) WITH ORDINALITY AS elements(element, position)) ELSE j END").format(
            json_apply(rule, sql.Identifier("element"), rest, inner, variant))
    else:
        changed = sql.SQL("CASE WHEN jsonb_typeof(j) = 'object' AND j ? {key} "
                          "THEN jsonb_set(j, ARRAY[{key}], {value}) ELSE j END").format(
            key=_lit(head), value=json_apply(rule, sql.SQL("(j -> {})").format(_lit(head)), rest, inner, variant))
    return sql.SQL("(SELECT {} FROM (SELECT {} AS j) AS json_value)").format(changed, document)


def _json_leaf(rule: ResolvedRule, leaf: sql.Composable, inner: Rule, variant: str | None) -> sql.Composable:
    """One json value replaced: null → JSON null, fixed → its YAML value, a whole object or array → null."""
    if inner.kind == "keep":
        return leaf
    if inner.kind == "null":
        return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE 'null'::jsonb END").format(leaf)
    if inner.kind == "fixed":
        return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {}::jsonb END").format(
            leaf, _lit(json.dumps(inner.option("value"), default=str)))
    text = sql.SQL("({} #>> '{{}}')").format(leaf)
    replaced = rule_sql(rule.inner(inner, TEXT_SHAPE), text, variant)
    return sql.SQL("CASE WHEN {l} IS NULL OR jsonb_typeof({l}) = 'null' THEN {l} "
                   "WHEN jsonb_typeof({l}) IN ('object', 'array') THEN 'null'::jsonb "
                   "ELSE to_jsonb(({r})::text) END").format(l=leaf, r=replaced)


_BUILDERS = {
    "keep": _keep, "null": _null, "fixed": _fixed, "mask": _mask, "hash": _hash, "fake_email": _fake_email,
    "fake_name": _fake_name, "fake_first_name": _fake_first_name, "fake_last_name": _fake_last_name,
    "fake_city": _fake_city, "fake_postcode": _fake_postcode, "fake_address": _fake_address,
    "fake_phone": _fake_phone, "fake_iban": _fake_iban, "random_date": _random_date, "random_int": _random_int,
    "random_number": _random_number, "shift_date": _shift_date, "generalize": _generalize, "noise": _noise,
    "inet": _inet, "scrub": _scrub, "each": _each, "json": _json,
}


def max_output(rule: ResolvedRule) -> int | None:
    """The longest text ``rule`` produces, when known (to fit varchar(n) and to refuse what cannot)."""
    kind = rule.kind
    if kind == "fixed":
        text = literal_text(rule.option("value"))
        return None if text is None else len(text)
    if kind == "fake_email":
        return len("user_@") + email_hex_length(rule) + len(rule.option("domain") or DEFAULT_DOMAIN)
    if kind == "hash":
        shape = rule.canonical or rule.shape
        return 36 if shape.type_name == "uuid" else 20 if shape.type_name in INTEGER_BITS else hash_hex_length(rule)
    pool = _pool(rule)
    lengths = {"fake_name": max(map(len, pool.first_names)) + 1 + max(map(len, pool.last_names)),
               "fake_first_name": max(map(len, pool.first_names)), "fake_last_name": max(map(len, pool.last_names)),
               "fake_city": max(map(len, pool.cities)), "fake_postcode": max(map(len, pool.postcodes)),
               "fake_address": 4 + max(map(len, pool.streets)), "fake_iban": 33}
    return lengths.get(kind)


def with_shape(rule: ResolvedRule, shape: Shape) -> ResolvedRule:
    return replace(rule, shape=shape)
