"""`python -m bench.agents`: the coding agents (and two SDK tool loops) through the gateway.

Every client runs with its default settings, through each provider setup (bench/agents/setups.py),
with a shell-tool round trip: the fake upstream, seeing the prompt's marker, calls the client's
own shell tool with `expr 40 + 2`, then answers with the tool's output, so "42" in the client's
final answer means the loop went through the gateway both ways. Through the mock (which calls
the first offered tool, not the shell) a completed turn ending in the mock's reply is the test.

Prints a Markdown table: client (version) x setup -> ok / failed (why), seconds. Exit status 1
when a row failed. Every run is bounded (`--timeout`), and so is the whole (`--deadline`):
rows not started by then are reported as not run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from bench.agents.clients import CLIENTS, Client, package_version
from bench.agents.run import Outcome, run_one
from bench.agents.setups import SETUPS, Setup


async def _version(client: Client) -> str:
    if client.package:
        return package_version(client.package) or ""
    try:
        process = await asyncio.create_subprocess_exec(
            *client.version_argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    except (OSError, TimeoutError):
        return "?"
    words = out.decode(errors="replace").split()
    return next((w for w in words if w[:1].isdigit()), "?")


async def _run_all(
    pairs: list[tuple[Client, Setup]],
    args: argparse.Namespace,
) -> list[tuple[Client, Setup, Outcome]]:
    jobs = asyncio.Semaphore(args.jobs)
    end = time.monotonic() + args.deadline

    async def one(client: Client, setup: Setup) -> Outcome:
        async with jobs:
            left = end - time.monotonic()
            if left < 5:
                return Outcome(False, "not run: the deadline passed", 0)
            if not client.installed():
                return Outcome(False, f"not installed ({client.program})", 0)
            outcome = await run_one(client, setup, min(args.timeout, left), args.keep)
            print(
                f"  {client.name} / {setup.name}: "
                f"{'ok' if outcome.ok else 'failed'} ({outcome.seconds:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            return outcome

    outcomes = await asyncio.gather(*(one(client, setup) for client, setup in pairs))
    return [(c, s, o) for (c, s), o in zip(pairs, outcomes, strict=True)]


def _table(rows: list[tuple[Client, Setup, Outcome]], versions: dict[str, str]) -> str:
    lines = ["| client | provider | result | s |", "| --- | --- | --- | --- |"]
    for client, setup, outcome in rows:
        if outcome.ok:
            result = f"ok, past: {outcome.reason}" if outcome.reason else "ok"
        else:
            result = f"failed: {outcome.reason}"
        result = result.replace("|", "\\|").replace("\n", " ")
        label = client.label(versions[client.name])
        lines.append(f"| {label} | {setup.name} | {result} | {outcome.seconds:.1f} |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    clients = [c for c in CLIENTS if not args.client or c.name in args.client]
    setups = [s for s in SETUPS if not args.provider or s.name in args.provider]
    pairs = [(c, s) for c in clients for s in setups if s.serves(c.formats)]
    names = sorted({c.name for c in clients})
    found = await asyncio.gather(*(_version(c) for c in clients))
    versions = dict(zip([c.name for c in clients], found, strict=True))
    print(
        f"{len(pairs)} runs of {', '.join(names)}; up to {args.jobs} at once, each at most "
        f"{args.timeout:g} s, all within {args.deadline:g} s",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    rows = await _run_all(pairs, args)
    print(_table(rows, versions))
    failed = sum(not o.ok for _, _, o in rows)
    print(f"\n{len(rows) - failed} ok, {failed} failed, {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.agents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--client",
        action="append",
        choices=[c.name for c in CLIENTS],
        help="only this client (repeatable)",
    )
    parser.add_argument(
        "--provider",
        action="append",
        choices=[s.name for s in SETUPS],
        help="only this setup (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=90, help="seconds per run (90)")
    parser.add_argument("--deadline", type=float, default=420, help="seconds for everything (420)")
    parser.add_argument("--jobs", type=int, default=3, help="runs at once (3)")
    parser.add_argument("--keep", type=Path, help="keep each run's files (logs) under this dir")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
