"""What a subset holds, for people and for CI: the ``subset`` part of the sync's summary and ``--subset-plan``.

Everything here works on plain data (the summary is a dict, as in ``--json``), so a summary read back from JSON
prints the same lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from psycopg import sql

from tether.conninfo import DatabaseAddress

if TYPE_CHECKING:
    from tether.sync.subset import SubsetResult

HELD_BACK = "references the sampled"  # tether.sync.subset_graph's reason for a small table left empty
SHOWN = 8  # table names listed in a line before "and N more"
CATEGORIES = ("selected", "children", "referenced", "whole")


def subset_summary(result: SubsetResult) -> dict[str, Any]:
    """The plan as data: per copied table how it is reached and its rows by category; totals; unreached tables."""
    graph = result.graph
    tables: list[dict[str, Any]] = []
    for oid in sorted(result.leaves, key=graph.name):
        rows = result.leaves[oid]
        estimate = graph.estimates.get(oid, -1.0)
        tables.append({"table": rows.relation.qualified, "of": rows.unit if rows.unit != rows.relation.qualified
                       else None, "reached": rows.reach.how, "how": rows.reach.reason, "rows": rows.rows,
                       **rows.counts, "source_rows_estimate": round(estimate) if estimate >= 0 else None,
                       "source_bytes": rows.relation.bytes})
    totals = {name: sum(table[name] for table in tables) for name in CATEGORIES}
    units = result.classification.reach
    return {
        "spec": result.spec.as_dict(),
        "tables": tables,
        "rows": {**totals, "total": sum(totals.values())},
        "whole_tables": sorted(graph.name(unit) for unit, reach in units.items() if reach.how == "whole"),
        "empty_tables": sorted(graph.name(unit) for unit, reach in units.items() if reach.how == "empty"),
        "source_bytes": sum(table["source_bytes"] for table in tables),
        "bytes": None,  # measured on the local copy once it is built (measure_local)
        "fraction": None,
        "plan_seconds": round(result.seconds, 3),
        "queries": result.queries,
        "rounds": result.rounds,
        "notes": list(result.classification.notes),
    }


def measure_local(summary: dict[str, Any], dest: DatabaseAddress) -> None:
    """Each table's size in the local copy (heap and TOAST, as the source's is measured) and the fraction of the
    source's bytes that makes."""
    from tether.sync.snapshot import connect_local

    names = [table["table"] for table in summary["tables"]]
    if not names:
        return
    with connect_local(dest) as conn:
        sizes = {str(name): int(size or 0) for name, size in conn.execute(sql.SQL(
            "SELECT n.nspname || '.' || c.relname, pg_table_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname || '.' || c.relname = ANY(%s)"), (names,))}
    for table in summary["tables"]:
        table["bytes"] = sizes.get(table["table"])
    summary["bytes"] = sum(sizes.values())
    source = summary["source_bytes"]
    summary["fraction"] = round(summary["bytes"] / source, 4) if source else None


def subset_phase_line(summary: Mapping[str, Any]) -> str:
    """Said before the copy starts: how many rows the subset takes, and how long finding them took."""
    rows = summary["rows"]
    return (f"subset: {rows['total']:,} rows in {len(summary['tables'])} tables ("
            + ", ".join(f"{rows[name]:,} {name}" for name in CATEGORIES)
            + f"), found in {summary['plan_seconds']:.2f} s with {summary['queries']} read-only queries")


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _tables(count: int) -> str:
    return f"{count} table" + ("" if count == 1 else "s")


def _megabytes(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:,.1f} MB"


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """A few lines for the end of a sync."""
    spec, rows = summary["spec"], summary["rows"]
    children = f"children {', '.join(spec['children'])} to depth {spec['depth']}; " if spec["children"] else ""
    lines = [f"  subset ({'; '.join(spec['roots'])}; {children}seed {spec['seed']}): {rows['total']:,} rows: "
             + ", ".join(f"{rows[name]:,} {name}" for name in CATEGORIES)]
    if summary.get("fraction") is not None:
        lines.append(f"    {_megabytes(summary['bytes'])} of the source's {_megabytes(summary['source_bytes'])} "
                     f"({summary['fraction']:.1%} of its table bytes)")
    biggest = sorted((table for table in summary["tables"] if table["rows"] and table["reached"] != "whole"),
                     key=lambda table: -table["rows"])
    if biggest:
        lines.append("    " + "; ".join(f"{table['table']} {table['rows']:,} ({table['how']})"
                                          for table in biggest[:4]))
    if summary["whole_tables"]:
        lines.append(f"    copied whole ({len(summary['whole_tables'])}): {_names(summary['whole_tables'])}")
    if summary["empty_tables"]:
        lines.append(f"    left empty ({len(summary['empty_tables'])}): {_names(summary['empty_tables'])}")
    lines.extend(f"    note: {note}" for note in summary.get("notes", []))
    return lines


def plan_lines(summary: Mapping[str, Any], source: str) -> list[str]:
    """``--subset-plan``: every table with rows, how it is reached and its rows (counted in the snapshot)."""
    spec = summary["spec"]
    lines = [f"Subset plan for {source} (roots {'; '.join(spec['roots'])}; children "
             f"{', '.join(spec['children']) or 'none'}, depth {spec['depth']}; seed {spec['seed']}; tables up to "
             f"{spec['whole_below']:,} bytes copied whole). Rows counted in one snapshot of the source; nothing "
             "was copied.", ""]
    width = max([len(table["table"]) for table in summary["tables"]] + [5])
    header = f"  {'table':<{width}}  {'rows':>10}  {'of ~source':>10}  reached as"
    lines += [header, "  " + "-" * (len(header) + 20)]
    order = {"root": 0, "children": 1, "referenced": 2, "whole": 3, "empty": 4}
    shown = [table for table in summary["tables"] if table["reached"] not in ("whole", "empty")]
    for table in sorted(shown, key=lambda item: (order[item["reached"]], item["table"])):
        estimate = table["source_rows_estimate"]
        parts = ", ".join(f"{table[name]:,} {name}" for name in CATEGORIES[:3] if table[name])
        lines.append(f"  {table['table']:<{width}}  {table['rows']:>10,}  "
                     f"{'?' if estimate is None else f'{estimate:,}':>10}  {table['how']}"
                     + (f" [{parts}]" if parts else ""))
    rows = summary["rows"]
    whole = summary["whole_tables"]
    whole_rows = rows["whole"]
    if whole:
        lines.append(f"  copied whole ({_tables(len(whole))}, {whole_rows:,} rows): {_names(whole)}")
    held = sorted({table["of"] or table["table"] for table in summary["tables"]
                   if table["reached"] == "empty" and table["how"].startswith(HELD_BACK)})
    unreached = [name for name in summary["empty_tables"] if name not in held]
    if unreached:
        lines.append(f"  left empty ({_tables(len(unreached))}: nothing reaches them and they are larger than "
                     f"{spec['whole_below']:,} bytes): {_names(unreached)}")
    if held:
        lines.append(f"  left empty ({_tables(len(held))}: they reference a sampled table; list them in "
                     f"--subset-children for their rows that reference the selected ones): {_names(held)}")
    estimated = sum(table["source_rows_estimate"] or 0 for table in summary["tables"])
    lines.append("")
    lines.append(f"Total: {rows['total']:,} rows ({', '.join(f'{rows[name]:,} {name}' for name in CATEGORIES)})"
                 + (f" of about {estimated:,} in the source" if estimated else "")
                 + f"; {summary['queries']} queries in {summary['plan_seconds']:.2f} s.")
    lines.extend(f"note: {note}" for note in summary.get("notes", []))
    return lines
