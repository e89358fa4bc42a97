"""The `ows-pipeline` command line: `ows-pipeline <command> [options]`.

Commands:
  demo          build the demo source and run the weekly pipeline on it for the last weeks
  demo-source   write (or advance) the demo OWS source database
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence


def _demo_source_parser(commands) -> None:
    from ows_pipeline.demo.source import DEFAULTS

    parser = commands.add_parser(
        "demo-source",
        help="write a realistic, deterministic demo OWS source database (or advance it)",
        description=(
            "Write the eight OWS tables with WEEKS weeks of history up to --as-of (default now) to --url, "
            "or with --advance move an existing demo forward to --as-of (default: one week later), "
            "writing only what happened in between."
        ),
    )
    parser.add_argument("--url", help="SQLAlchemy URL of the source database (default: OWS_SOURCE_URL, "
                        "else the SQLite file ows_source.db under OWS_HOME); password from OWS_SOURCE_PASSWORD")
    parser.add_argument("--schema", help="database schema owning the tables (Oracle; default OWS_SOURCE_SCHEMA)")
    sizes = {
        "seed": "random seed",
        "projects": "projects running workflows; one archive project per eight more comes and goes",
        "feeds_per_project": "feeds per project",
        "workflows_per_project": "workflow codes per project",
        "runs_per_day": "workflow runs per weekday, all workflows together (weekends run 15%%)",
        "weeks": "weeks of history before the week of --as-of",
    }
    for name, text in sizes.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), type=int, default=None, help=f"{text} (default {DEFAULTS[name]})"
        )
    parser.add_argument("--as-of", help="ISO date or time (UTC unless an offset is given) the source is as of")
    parser.add_argument("--advance", action="store_true",
                        help="advance the existing demo at --url to --as-of, keeping its parameters")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.set_defaults(handler=_demo_source)


def _demo_source(args: argparse.Namespace) -> int:
    from ows_pipeline.settings import Settings
    from ows_pipeline.demo.source import DEFAULTS, DemoSourceError, advance_demo, generate_demo

    settings = Settings.from_env()
    url = args.url or settings.source_url
    password = os.environ.get("OWS_SOURCE_PASSWORD")
    if password:
        import sqlalchemy as sa

        parsed = sa.make_url(url)
        if parsed.password is None:
            url = parsed.set(password=password).render_as_string(hide_password=False)
    schema = args.schema or settings.source_schema
    given = [name for name in DEFAULTS if getattr(args, name) is not None]
    if args.advance and given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        print(f"ows-pipeline demo-source: --advance keeps the parameters the demo was made with; drop {options}",
              file=sys.stderr)
        return 2
    sizes = {name: DEFAULTS[name] if getattr(args, name) is None else getattr(args, name) for name in DEFAULTS}
    try:
        if args.advance:
            summary = advance_demo(url, args.as_of, schema=schema, progress=not args.quiet)
        else:
            summary = generate_demo(
                url,
                **sizes,
                as_of=args.as_of,
                schema=schema,
                progress=not args.quiet,
            )
    except DemoSourceError as exc:
        print(f"ows-pipeline demo-source: {exc}", file=sys.stderr)
        return 2
    if summary.as_of > dt.datetime.now(dt.timezone.utc):
        print(f"note: the source is as of {summary.as_of.isoformat()}, in the future", file=sys.stderr)
    if not args.quiet:
        print(summary)
    return 0


def _demo_parser(commands) -> None:
    parser = commands.add_parser(
        "demo",
        help="build the demo source and run the weekly pipeline for the last weeks (what `make demo` runs)",
        description=(
            "Generate the demo OWS source, then for each of the last WEEKS complete weeks advance it to "
            "Sunday 02:00 and run ows_weekly_job for the week just ended, as the schedule would. Uses the "
            "embedded default (OWS_HOME); the demo source and warehouse SQLite files there are rebuilt."
        ),
    )
    parser.add_argument("--weeks", type=int, default=4, help="weekly runs to make (default 4)")
    parser.add_argument("--history-weeks", type=int, default=12, help="source history before them (default 12)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the demo source (default 42)")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ows_pipeline.demo.pipeline import run_demo

    run_demo(weeks=args.weeks, history_weeks=args.history_weeks, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ows-pipeline", description="OWS pipeline tools.")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.required = True
    _demo_parser(commands)
    _demo_source_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ows-pipeline` command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
