"""The ``autolabel-lite`` command line."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .errors import AutolabelError


def _common(parser: argparse.ArgumentParser, output_help: str) -> None:
    parser.add_argument("config", help="task config JSON file")
    parser.add_argument("data", help="CSV, JSONL or Parquet file to label")
    parser.add_argument("--output", "-o", type=Path, help=output_help)
    parser.add_argument("--max-rows", type=int, help="label only the first N rows")
    parser.add_argument("--concurrency", type=int, help="requests in flight for API providers (in a cascade: the last stage's)")
    parser.add_argument("--provider", help="override model.provider (embedded, transformers, openai, classifier); in a cascade, the last stage's")
    parser.add_argument("--model", help="override model.name (in a cascade: the last stage's)")
    parser.add_argument("--base-url", help="override model.base_url, an OpenAI-compatible server (in a cascade: the last stage's)")
    parser.add_argument("--cache", help="SQLite path or database URL for the cache")
    parser.add_argument("--report", type=Path, help="also write a self-contained HTML report (figures, tables, lowest-confidence rows) here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autolabel-lite", description="Label a dataset with a language model.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="label every row and write a CSV")
    _common(run, "where to write the labeled rows: .csv, .jsonl, .parquet, or .json with --format (default: <data>_<task>_labeled.csv beside the data)")
    run.add_argument("--only-accepted", action="store_true", help="write only accepted rows to --output")
    run.add_argument("--rejected", type=Path, help="also write the rejected rows to this file (same types as --output)")
    run.add_argument(
        "--format",
        choices=["label-studio", "argilla"],
        help="the review tool a .json --output or --rejected is for (Label Studio also gets <name>.xml, its labeling config)",
    )
    run.add_argument("--from-name", help="review formats: the question's name (default: label)")
    run.add_argument("--to-name", help="review formats: the name of the text it is about (default: its input column)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--engine", choices=["local", "ray"], default="local", help="where rows are labeled: this process (default) or Ray")
    run.add_argument("--ray-address", help="the Ray cluster to join (e.g. auto); default: start a local one")
    run.add_argument("--workers", type=int, help="Ray actors labeling at once, each with its own model (default 1)")
    run.add_argument("--gpus-per-worker", type=float, help="GPUs each Ray actor reserves (default 0)")
    plan = commands.add_parser("plan", help="show the prompt, estimate tokens and cost, and tune the threshold on seed rows")
    _common(plan, "names the quality-vs-completion plot: written as <output stem>_plan.png beside it")
    plan.add_argument(
        "--seed",
        type=_seed,
        help="labeled seed rows: a file with the ground-truth column, or a number N for the first N rows of DATA",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--no-progress", action="store_true", help="no progress bar")
    reviews = commands.add_parser("import-reviews", help="turn a Label Studio or Argilla export into labeled rows (seed rows, few-shot examples)")
    reviews.add_argument("export", type=Path, help="the review tool's JSON export")
    reviews.add_argument("--config", required=True, help="task config JSON file: the rows get its input and label columns")
    reviews.add_argument("--output", "-o", type=Path, required=True, help="where to write the rows: .csv, .jsonl or .parquet")
    reviews.add_argument("--from-name", help="the question's name in the export (default: label)")
    return parser


def _seed(value: str) -> Path | int:
    return int(value) if value.isdigit() and not Path(value).exists() else Path(value)


def _agent(args):
    from .agent import LabelingAgent

    return LabelingAgent(
        args.config,
        provider=args.provider,
        model=args.model,
        base_url=args.base_url,
        cache=args.cache,
        concurrency=args.concurrency,
    )


def cmd_run(args) -> int:
    from .errors import DataError
    from .files import check_outputs, same_file
    from .result import review_companion

    agent = _agent(args)
    output = args.output or Path(args.data).with_name(Path(args.data).stem + f"_{agent.config.task_name}_labeled.csv")
    outputs = {"--output": output, "--rejected": args.rejected}
    # --format is for the .json outputs; the others follow their extension. All checked before any model call.
    formats = {flag: _format_for(path, args.format) for flag, path in outputs.items() if path is not None}
    if args.format and not any(path.suffix.lower() == ".json" for path in outputs.values() if path is not None):
        raise DataError(f"--format {args.format}: writes a .json file; name --output or --rejected *.json")
    companions = {f"{flag} labeling config": review_companion(outputs[flag], fmt) for flag, fmt in formats.items()}
    check_outputs([args.data], {**outputs, **companions, "--report": args.report})
    for flag, path in {**outputs, "--report": args.report}.items():  # a .json output could name the config itself
        if path is not None and same_file(path, args.config):
            raise DataError(f"{flag} {path}: is the task config; write the labels to another file")
    result = agent.run(
        args.data,
        max_rows=args.max_rows,
        progress=False if args.no_progress else None,
        engine=args.engine,
        ray_address=args.ray_address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
    )
    names = {"from_name": args.from_name, "to_name": args.to_name}
    written = result.write(output, "accepted" if args.only_accepted else "all", format=formats["--output"], **names)
    print(result.summary(), file=sys.stderr)
    print(f"wrote {written} rows to {output}", file=sys.stderr)
    if args.rejected:
        rejected = result.write(args.rejected, "rejected", format=formats["--rejected"], **names)
        print(f"wrote {rejected} rejected rows to {args.rejected}", file=sys.stderr)
    if args.report:
        print(f"wrote the report to {result.write_report(args.report)}", file=sys.stderr)
    return 0


def _format_for(path: Path, review_format: str | None) -> str:
    from .export import output_format

    return output_format(path, review_format if path.suffix.lower() == ".json" else None)


def cmd_plan(args) -> int:
    import json

    from .files import check_outputs

    agent = _agent(args)
    plot = args.output.with_name(args.output.stem + "_plan.png") if args.output else None
    check_outputs([args.data, *([args.seed] if isinstance(args.seed, Path) else [])], {"--output": plot, "--report": args.report})
    plan = agent.plan(args.data, seed=args.seed, max_rows=args.max_rows, plot=plot, progress=False if args.no_progress else None)
    print(json.dumps(plan.to_dict(), indent=2, allow_nan=False) if args.json else plan)
    if args.report:
        print(f"wrote the report to {plan.write_report(args.report)}", file=sys.stderr)
    return 0


def cmd_import_reviews(args) -> int:
    from .reviews import import_reviews

    imported = import_reviews(args.export, args.config, args.output, from_name=args.from_name)
    print(imported.summary(args.output), file=sys.stderr)
    return 0


COMMANDS = {"run": cmd_run, "plan": cmd_plan, "import-reviews": cmd_import_reviews}


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """Warnings for the user (ignored config keys, fallbacks) as one line, without source code."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _warning_line
    args = build_parser().parse_args(argv)
    if getattr(args, "max_rows", None) is not None and args.max_rows < 1:
        print("error: --max-rows must be at least 1", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except AutolabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished rows are saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
