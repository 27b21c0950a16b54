"""What one benchmark run measures, and for how long: the full run and `--quick` (the CI smoke run)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RATES = (50, 100, 200, 400, 800)


@dataclass(frozen=True)
class Options:
    out: Path = Path("bench-results")
    quick: bool = False
    #: worker processes, for our pipeline and for the bare Celery baseline alike
    workers: int = 2
    #: threads per worker process (SMS_CONCURRENCY; `-c` of the bare worker)
    concurrency: int = 200
    #: producer processes driving the sweep and the saturation runs
    producers: int = 2
    #: the slow fake's response time: saturation and the load sweep use it
    provider_latency_ms: float = 100.0
    #: seconds of each timed load phase (200 msg/s, saturation); each sweep step lasts half of it
    duration: float = 8.0
    #: messages of each one-at-a-time measurement
    serial: int = 1000
    #: offered loads of the sweep (msg/s), for the PNG
    rates: tuple[int, ...] = DEFAULT_RATES
    #: the offered load of the "added latency under load" and "event-loop lag" figures
    headline_rate: int = 200
    #: Redis with AOF (appendfsync everysec), as in production; off by default to keep other
    #: processes' disk traffic out of the numbers
    appendonly: bool = False
    #: extra environment (NAME=VALUE) and command-line arguments for our workers, for tuning
    worker_env: tuple[str, ...] = ()
    worker_args: tuple[str, ...] = ()
    #: run only this phase ("receipts": the HTTP service's receipt handling); None: everything
    only: str | None = None
    #: the receipts phase: messages sent first (each gets a `sent` and a `delivered` receipt), the
    #: offered load of its timed window (receipts/s), and requests outstanding per producer flat out
    receipts_messages: int = 2000
    receipts_rate: int = 200
    receipts_in_flight: int = 32
    #: run everything this many times: each figure's range over the runs beside the last run's
    repeat: int = 1
    #: `--profile`: only the profile (worker/bench/profile.py), at this offered load, sampled at this rate
    profile: bool = False
    profile_rate: int = 100
    profile_sample_rate: int = 400

    @property
    def sweep_duration(self) -> float:
        return max(self.duration / 2, 0.3)

    @property
    def warmup(self) -> float:
        """Seconds of load before a saturation run starts counting."""
        return min(2.0, max(self.duration / 4, 0.3))

    @property
    def in_flight(self) -> int:
        """Sends each producer keeps outstanding during saturation: all threads busy, a queue behind."""
        return max(1, (self.workers * self.concurrency * 3 // 2) // self.producers)


#: `--quick`: every measurement still runs, on one worker, with tiny counts and short phases
QUICK = Options(quick=True, workers=1, serial=20, duration=2.0, receipts_messages=60, receipts_rate=50)

#: phases `--only` can run by themselves
PHASES = ("receipts",)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's options, on `python -m worker.bench` and on `midcall-sms bench` alike."""
    p.add_argument("--quick", action="store_true", help="smoke mode for CI: tiny counts, well under a minute")
    p.add_argument("--out", type=Path, default=Options.out, help="where bench.json and latency.png go")
    p.add_argument("--workers", type=int, help=f"worker processes (default {Options.workers}; --quick 1)")
    p.add_argument("--concurrency", type=int, default=Options.concurrency, help="threads per worker")
    p.add_argument("--producers", type=int, default=Options.producers, help="producer processes")
    p.add_argument(
        "--provider-latency-ms", type=float, default=Options.provider_latency_ms,
        help="the slow fake's response time, for saturation and the sweep",
    )  # fmt: skip
    p.add_argument("--duration", type=float, help=f"seconds per load phase (default {Options.duration:g})")
    p.add_argument("--serial", type=int, help=f"sends per one-at-a-time figure (default {Options.serial})")
    p.add_argument("--rates", type=_rates, help="offered loads of the sweep (default 50,100,200,400,800)")
    p.add_argument(
        "--rate", type=int, default=Options.headline_rate,
        help="offered load of the 'added latency under load' and event-loop lag figures (target: 200)",
    )  # fmt: skip
    p.add_argument(
        "--worker-env", action="append", default=[], type=_assignment, metavar="NAME=VALUE",
        help="extra environment for our workers, e.g. SMS_TASK_EVENTS=false (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--worker-arg", action="append", default=[], metavar="ARG",
        help="extra argument for our `celery worker`, e.g. --worker-arg=--prefetch-multiplier=4 (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--aof", action="store_true", help="Redis with appendonly yes, fsync everysec (default off)"
    )
    p.add_argument(
        "--repeat", type=int, default=Options.repeat, metavar="N",
        help="run the whole benchmark N times; the table adds each figure's range over the runs",
    )  # fmt: skip
    p.add_argument(
        "--profile", action="store_true",
        help="only the profile: py-spy on one worker and one producer, µs per text by stage (profile.json)",
    )  # fmt: skip
    p.add_argument(
        "--profile-rate", type=int, default=Options.profile_rate,
        help=f"--profile: offered load in msg/s (default {Options.profile_rate})",
    )  # fmt: skip
    p.add_argument(
        "--markdown", action="store_true",
        help="run nothing: print the README's performance table from <out>/bench.json (a finished run)",
    )  # fmt: skip
    p.add_argument("--only", choices=PHASES, help="run only this phase (receipts: the HTTP service)")
    p.add_argument(
        "--receipts-messages", type=int,
        help=f"receipts phase: texts sent, each then receipted twice (default {Options.receipts_messages})",
    )  # fmt: skip
    p.add_argument(
        "--receipts-rate", type=int,
        help=f"receipts phase: offered receipts/s of the timed window (default {Options.receipts_rate})",
    )  # fmt: skip
    return p


def parser() -> argparse.ArgumentParser:
    return add_arguments(
        argparse.ArgumentParser(
            prog="python -m worker.bench",
            description="Latency and throughput of the SMS pipeline next to the floor and the baselines.",
        )
    )


def _rates(text: str) -> tuple[int, ...]:
    try:
        rates = tuple(int(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rates wants integers separated by commas, got {text!r}"
        ) from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("--rates wants positive integers")
    return rates


def _given(args: argparse.Namespace, name: str, default: int) -> int:
    value = getattr(args, name, None)
    return default if value is None else int(value)


def _assignment(text: str) -> str:
    name, sep, _ = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--worker-env wants NAME=VALUE, got {text!r}")
    return text


def from_args(args: argparse.Namespace) -> Options:
    """The run the command line asks for; raises `ValueError` naming the bad options."""
    base = QUICK if args.quick else Options()
    options = Options(
        out=args.out,
        quick=args.quick,
        workers=args.workers if args.workers is not None else base.workers,
        concurrency=args.concurrency,
        producers=args.producers,
        provider_latency_ms=args.provider_latency_ms,
        duration=args.duration if args.duration is not None else base.duration,
        serial=args.serial if args.serial is not None else base.serial,
        rates=args.rates or base.rates,
        headline_rate=args.rate,
        appendonly=args.aof,
        worker_env=tuple(args.worker_env),
        worker_args=tuple(args.worker_arg),
        only=getattr(args, "only", None),
        receipts_messages=_given(args, "receipts_messages", base.receipts_messages),
        receipts_rate=_given(args, "receipts_rate", base.receipts_rate),
        repeat=_given(args, "repeat", base.repeat),
        profile=bool(getattr(args, "profile", False)),
        profile_rate=_given(args, "profile_rate", base.profile_rate),
    )
    problems = [
        f"--{name} must be at least 1"
        for name, value in (("workers", options.workers), ("concurrency", options.concurrency),
                            ("producers", options.producers), ("serial", options.serial),
                            ("rate", options.headline_rate),
                            ("receipts-messages", options.receipts_messages),
                            ("receipts-rate", options.receipts_rate),
                            ("profile-rate", options.profile_rate), ("repeat", options.repeat))
        if value < 1
    ]  # fmt: skip
    if options.duration <= 0 or options.provider_latency_ms < 0:
        problems.append("--duration must be positive and --provider-latency-ms not negative")
    if problems:
        raise ValueError("; ".join(problems))
    return options
