"""Extraction assets `raw_ows_<table>`: one step copies the selected OWS tables into the warehouse."""


import datetime as dt

import dagster as dg

from ows_pipeline.defs.policies import EXTRACTION_RETRY_POLICY, retry_only_transient
from ows_pipeline.resources import OwsSourceResource, WarehouseResource
from ows_pipeline.source.schema import SOURCE_TABLES, SOURCE_TABLES_BY_NAME

MODE_DESCRIPTIONS = {
    "full": "Full extract: replaced by every load.",
    "incremental": "Incremental on last_update_date with a look-back window; newest version of each key kept.",
    "append": "Append-only on hist_id, with a look-back for ids committed late.",
}

def _spec(source) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=f"raw_{source.name}",
        group_name="ows_raw",
        description=f"OWS `{source.name}` as extracted. {MODE_DESCRIPTIONS[source.mode]}",
        kinds={"oracle", "sql"},
        owners=["team:data-engineering"],
        skippable=True,
        tags={"ows/layer": "raw"},
        metadata={"ows/source_table": source.name, "ows/extract_mode": source.mode},
    )


def markdown_preview(columns: tuple[str, ...], rows: list[tuple], width: int = 8) -> str:
    """A small Markdown table of the first rows, for the UI."""
    shown = columns[:width]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = [("" if v is None else str(v)).replace("|", "\\|")[:40] for v in row[: len(shown)]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dg.multi_asset(
    specs=[_spec(s) for s in SOURCE_TABLES],
    can_subset=True,
    name="extract_ows_tables",
    retry_policy=EXTRACTION_RETRY_POLICY,
    op_tags={"dagster/concurrency_key": "ows_source"},
)
def raw_ows_tables(context: dg.AssetExecutionContext, ows_source: OwsSourceResource, warehouse: WarehouseResource):
    """Extract the selected OWS tables from the source database into `raw_ows_*`."""
    from ows_pipeline.extract.extraction import ExtractOptions, extract_table

    options = ExtractOptions(
        safety_delay=dt.timedelta(seconds=ows_source.safety_delay_seconds),
        lookback=dt.timedelta(seconds=ows_source.lookback_seconds),
        lookback_ids=ows_source.lookback_ids,
        chunk_rows=ows_source.chunk_rows,
        schema=ows_source.db_schema,
    )
    source_engine = ows_source.get_engine()
    warehouse_engine = warehouse.get_engine()
    context.log.info(f"Extracting from {ows_source.display_url()} into {warehouse.display_url()}")
    for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
        source = SOURCE_TABLES_BY_NAME[key.path[-1].removeprefix("raw_")]
        with retry_only_transient(f"Extracting {key.to_user_string()}"):
            result = extract_table(
                source_engine, warehouse_engine, source, options, run_id=context.run_id, log=context.log.debug
            )
        context.log.info(
            f"{key.to_user_string()}: {result.rows_in:,} rows read, {result.rows_loaded:,} loaded "
            f"in {result.seconds:.1f} s (watermark {result.watermark_from} -> {result.watermark_to})"
        )
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/row_count": dg.MetadataValue.int(result.table_rows),
                "rows_read": dg.MetadataValue.int(result.rows_in),
                "rows_loaded": dg.MetadataValue.int(result.rows_loaded),
                "batch_id": result.batch_id,
                "as_of": result.as_of.isoformat(),
                "watermark_from": result.watermark_from or "",
                "watermark_to": result.watermark_to or "",
                "duration_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
                "preview": dg.MetadataValue.md(markdown_preview(result.columns, result.preview)),
            },
        )


defs = dg.Definitions(assets=[raw_ows_tables])
