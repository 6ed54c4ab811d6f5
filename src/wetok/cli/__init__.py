"""Subcommands of the `wetok` command line. Each module exposes
`add_arguments(parser: argparse.ArgumentParser) -> None` and `run(args: argparse.Namespace) -> int`;
`wetok.cli` registers them in one list."""
