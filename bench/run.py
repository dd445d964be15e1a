"""Run Weir's benchmarks and write the results (see scripts/bench.sh).

Every section runs against the same tansu broker, S3 server and machine.
The raw numbers go to a JSON file, and the results part of BENCHMARKS.md is
rendered from them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIR_CACHE = Path(os.environ.get("WEIR_CACHE", Path.home() / ".cache" / "weir"))
os.environ["WEIR_CACHE"] = str(WEIR_CACHE)
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
sys.path.insert(0, str(REPO_ROOT / "bench"))

SECTION_NAMES = ("dump", "replication", "scaling", "caps", "memory", "latency", "control")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench.sh", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: backlogs of a few MB and short windows")
    parser.add_argument(
        "--out",
        type=Path,
        help="write results.json and BENCHMARKS.md into this directory instead of "
        "bench/results/ and the repository's BENCHMARKS.md",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTION_NAMES),
        help=f"comma-separated sections to run (default: all of {','.join(SECTION_NAMES)})",
    )
    parser.add_argument(
        "--record-sizes",
        default="100,1024,10240",
        help="record sizes in bytes of the dump section (default 100,1024,10240)",
    )
    parser.add_argument(
        "--dump-mib",
        default="",
        help="backlog of the dump topics in MiB (default 1024, quick mode 4): one number for "
        "every record size, or SIZE=MIB pairs such as 100=256,1024=1024",
    )
    parser.add_argument(
        "--replication-mib",
        type=int,
        help="backlog of the replication section in MiB (default 256, quick mode 4)",
    )
    parser.add_argument(
        "--replication-rtts",
        default="",
        help="round-trip times in ms that the replication section adds with its delay proxy, comma-separated; "
        "`direct` is the path without the proxy (default direct,0,20,100, quick mode direct,100)",
    )
    parser.add_argument("--weir-bin", type=Path, default=Path(os.environ.get("WEIR_BIN", REPO_ROOT / "target" / "release" / "weir")))
    parser.add_argument("--s3", choices=("s3s-fs", "moto"), default="s3s-fs", help="S3 server of the S3 column (default s3s-fs)")
    parser.add_argument("--work-dir", type=Path, help="directory for broker data, buckets and logs (default: a new one under /tmp)")
    parser.add_argument(
        "--broker-dir",
        type=Path,
        help="directory of the broker's SQLite database (default: a new one under /dev/shm, "
        "because fsync on a disk bounds tansu's produce rate)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory after the run")
    parser.add_argument(
        "--wait-for-load",
        type=float,
        metavar="LOAD",
        help="before starting, wait until the 1-minute load average is below LOAD (at most --wait-max minutes)",
    )
    parser.add_argument("--wait-max", type=float, default=60, metavar="MINUTES")
    parser.add_argument("--command", help="the command line to record (set by scripts/bench.sh)")
    args = parser.parse_args(argv)
    try:
        args.record_sizes = tuple(int(size) for size in args.record_sizes.split(","))
    except ValueError:
        parser.error(f"--record-sizes must be comma-separated integers, got {args.record_sizes!r}")
    try:
        args.dump_mib = parse_dump_mib(args.dump_mib, args.record_sizes)
    except ValueError:
        parser.error(f"--dump-mib must be a number or SIZE=MIB pairs, got {args.dump_mib!r}")
    try:
        args.replication_rtts = parse_rtts(args.replication_rtts)
    except ValueError:
        parser.error(f"--replication-rtts must be `direct` or numbers of ms, comma-separated, got {args.replication_rtts!r}")
    if args.replication_mib is not None and args.replication_mib < 1:
        parser.error(f"--replication-mib must be at least 1, got {args.replication_mib}")
    args.sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = [name for name in args.sections if name not in SECTION_NAMES]
    if unknown:
        parser.error(f"unknown sections {unknown}; expected some of {', '.join(SECTION_NAMES)}")
    return args


def parse_dump_mib(text: str, sizes: tuple[int, ...]) -> dict[int, int]:
    """Parse --dump-mib into {record size: MiB}; sizes not named keep the default."""
    if not text:
        return {}
    if "=" not in text:
        return {size: int(text) for size in sizes}
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {int(size): int(mib) for size, mib in pairs}


def parse_rtts(text: str) -> tuple[float | None, ...] | None:
    """Parse --replication-rtts into ms (None for `direct`); None when empty."""
    if not text:
        return None
    rtts = tuple(None if item.strip() == "direct" else float(item) for item in text.split(",") if item.strip())
    if any(rtt is not None and rtt < 0 for rtt in rtts):
        raise ValueError(f"negative round-trip time in {text!r}")
    return rtts


def wait_for_load(threshold: float, minutes: float) -> None:
    from weirbench import system

    deadline = time.monotonic() + minutes * 60
    while (load := system.load_average()[0]) >= threshold:
        if time.monotonic() > deadline:
            print(f"bench: load {load:.2f} still >= {threshold} after {minutes:.0f} min; starting anyway", file=sys.stderr)
            return
        print(f"bench: load {load:.2f} >= {threshold}; waiting", file=sys.stderr, flush=True)
        time.sleep(30)


def find_tools(args):
    from weirbench.services import Tools

    venv_bin = REPO_ROOT / ".venv" / "bin"
    s3s = WEIR_CACHE / "s3s-fs-0.14.1" / "bin" / "s3s-fs"
    wrk = Path("/usr/bin/wrk")
    tools = Tools(
        weir=args.weir_bin.resolve(),
        tansu=Path(os.environ.get("WEIR_TANSU", WEIR_CACHE / "tansu-0.6.0" / "bin" / "tansu")),
        rdkafka_performance=WEIR_CACHE / "rdkafka-performance-2.12.1" / "bin" / "rdkafka_performance",
        s3s_fs=s3s if s3s.exists() else None,
        moto=venv_bin / "moto_server",
        wrk=wrk if wrk.exists() else None,
    )
    missing = [
        f"{name} ({path}; {how})"
        for name, path, how in (
            ("weir", tools.weir, "cargo build --release, or pass --weir-bin"),
            ("tansu", tools.tansu, "scripts/setup-test-env.sh tansu"),
            ("rdkafka_performance", tools.rdkafka_performance, "scripts/bench-setup.sh rdkafka"),
            ("moto_server", tools.moto, "scripts/setup-test-env.sh venv"),
        )
        if not Path(path).exists()
    ]
    if args.s3 == "s3s-fs" and tools.s3s_fs is None:
        missing.append(f"s3s-fs ({s3s}; scripts/bench-setup.sh s3s)")
    if "control" in args.sections and tools.wrk is None:
        missing.append("wrk (/usr/bin/wrk; scripts/bench-setup.sh wrk)")
    if missing:
        raise SystemExit("bench: missing tools: " + "; ".join(missing))
    return tools


def versions(tools) -> dict:
    from weirbench import system

    return {
        "weir_commit": system.git_commit(REPO_ROOT),
        "weir_binary": str(tools.weir),
        "weir_version": system.command_output([tools.weir, "--version"]),
        "tansu": system.command_output([tools.tansu, "--version"]),
        "librdkafka": system.command_output([tools.rdkafka_performance, "-h"], r"librdkafka version (\S+)"),
        "s3s_fs": "0.14.1" if tools.s3s_fs else None,
        "moto": system.command_output([tools.moto.parent / "python", "-c", "import moto; print(moto.__version__)"]),
        "wrk": system.command_output([tools.wrk, "-v"], r"(wrk \S+)") if tools.wrk else None,
    }


def run(args) -> int:
    # huaweicloudsdkcore, imported by the harness's signer, writes under
    # $HOME; keep that out of the real home directory.
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="weir-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(work_dir / "home")
    Path(os.environ["HOME"]).mkdir(exist_ok=True)

    from harness import procs
    from harness.s3 import isolate_aws_environment

    from weirbench import report, system
    from weirbench.context import Context
    from weirbench.control import run_control
    from weirbench.dump import run_dump, run_scaling
    from weirbench.latency import run_latency
    from weirbench.limits import cap_specifications, run_caps, run_memory
    from weirbench.replication import run_replication
    from weirbench.services import FETCH_SETTINGS, MotoBench, S3sServer, start_broker, start_weir

    sections = {
        "dump": run_dump,
        "replication": run_replication,
        "scaling": run_scaling,
        "caps": run_caps,
        "memory": run_memory,
        "latency": run_latency,
        "control": run_control,
    }
    isolate_aws_environment()
    if args.wait_for_load is not None:
        wait_for_load(args.wait_for_load, args.wait_max)
    tools = find_tools(args)
    results: dict = {
        "command": args.command or shlex.join(["bench/run.py", *sys.argv[1:]]),
        "mode": "quick" if args.quick else "full",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": system.machine(),
        "versions": versions(tools),
        "sections": {},
    }
    print(f"bench: work directory {work_dir}", file=sys.stderr)
    stopping = []

    def stop_on_signal(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop_on_signal)
    failed = []
    ctx = None
    if args.broker_dir is not None:
        broker_dir = args.broker_dir
    elif Path("/dev/shm").is_dir():
        broker_dir = Path(tempfile.mkdtemp(prefix="weir-bench-broker-", dir="/dev/shm"))
    else:
        broker_dir = work_dir / "broker"
    results["broker_storage"] = f"sqlite://{broker_dir}/tansu.db"
    try:
        broker, kafka = start_broker(tools, broker_dir)
        if args.s3 == "s3s-fs":
            s3 = S3sServer(tools.s3s_fs, work_dir / "s3s").start()
        else:
            s3 = MotoBench(tools.moto, work_dir / "moto-main").start()
        specifications = cap_specifications(args.quick)
        weir = start_weir(tools, work_dir, kafka.bootstrap, 16, specifications, FETCH_SETTINGS)
        ctx = Context(
            args.quick, tools, work_dir, broker, kafka, s3, weir, specifications, args.record_sizes, args.dump_mib
        )
        ctx.replication_mib = args.replication_mib
        ctx.replication_rtts = args.replication_rtts
        ctx.servers.append(weir)
        failed_setup = False
        for name in args.sections:
            ctx.log(f"section {name}: load {system.load_average()}")
            section = {"load_before": system.load_average()}
            started = time.monotonic()
            try:
                section.update(sections[name](ctx))
            except KeyboardInterrupt:
                raise
            except Exception as error:  # a failed section must not hide the others
                traceback.print_exc()
                section["error"] = f"{type(error).__name__}: {error}"
                failed.append(name)
            section["seconds"] = time.monotonic() - started
            section["load_after"] = system.load_average()
            results["sections"][name] = section
            # Write after every section, so that a run stopped later keeps
            # the numbers of the sections it finished.
            report.write(results, args.out, REPO_ROOT)
    finally:
        if ctx is not None:
            for server in ctx.servers:
                server.server.stop()
        for process in reversed(procs.STARTED):
            if process.alive():
                process.stop(grace=5)
        if not args.keep and args.broker_dir is None:
            shutil.rmtree(broker_dir, ignore_errors=True)
        if not args.keep and args.work_dir is None and (stopping or failed_setup):
            shutil.rmtree(work_dir, ignore_errors=True)
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results["load_after"] = system.load_average()
    json_path, page_path = report.write(results, args.out, REPO_ROOT)
    print(f"bench: results in {json_path} and {page_path}", file=sys.stderr)
    if failed:
        # The logs of the broker, the servers and the nodes explain the failure.
        print(f"bench: sections failed: {', '.join(failed)}; logs kept in {work_dir}", file=sys.stderr)
        return 1
    if not args.keep and args.work_dir is None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main() -> int:
    return run(parse_args(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
