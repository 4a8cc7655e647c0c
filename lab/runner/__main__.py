"""Command line of the lab runner; see `lab.runner` and `lab.runner.status`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from lab.runner.httpsource import UrlSource, parse_header
from lab.runner.pod import Settings
from lab.runner.runner import Runner
from lab.runner.urlconfig import ConfigWatcher, default_config_path


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.runner",
        description="Process-mode static-pod runner: the lab's stand-in for the kubelet.",
    )
    parser.add_argument("--manifests", required=True, help="static pod directory to watch")
    parser.add_argument("--status", required=True, help="status JSON file to write")
    parser.add_argument("--logs", required=True, help="directory for <pod-name>.log files")
    parser.add_argument("--bin-dir", required=True,
                        help="where image names are looked up as binaries")
    parser.add_argument("--manifest-url", help="kubelet --manifest-url: Pod or PodList URL")
    parser.add_argument("--manifest-url-ca",
                        help="CA bundle to verify an https manifest URL (default: no check)")
    parser.add_argument("--header", action="append", default=[], metavar="'Name: value'",
                        help="header sent with every manifest-URL request (repeatable)")
    parser.add_argument("--config",
                        help="JSON file with the URL source settings, re-read when it changes "
                             "(default: config.json beside --status; see lab.runner.urlconfig)")
    parser.add_argument("--file-check-frequency", type=_positive_float, default=1.0,
                        help="seconds between directory scans (kubelet default 20; lab 1)")
    parser.add_argument("--http-check-frequency", type=_positive_float, default=2.0,
                        help="seconds between manifest-URL polls (kubelet default 20; lab 2)")
    parser.add_argument("--backoff-base", type=_positive_float, default=10.0,
                        help="first restart back-off in seconds (kubelet: 10)")
    parser.add_argument("--backoff-cap", type=_positive_float, default=300.0,
                        help="maximum restart back-off in seconds (kubelet: 300)")
    parser.add_argument("--backoff-reset", type=_positive_float, default=600.0,
                        help="a container that ran this long restarts from the base back-off")
    parser.add_argument("--probe-time-scale", type=_positive_float, default=1.0,
                        help="multiplies probe initialDelaySeconds and periodSeconds "
                             "(not timeouts); 1.0 is faithful")
    parser.add_argument("--stop-grace", type=float, default=2.0,
                        help="SIGTERM -> SIGKILL grace (the pod's terminationGracePeriodSeconds"
                             " if smaller)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s lab-runner: %(message)s",
    )
    try:
        headers = [parse_header(h) for h in args.header]
        url_source = (
            UrlSource(args.manifest_url, headers, args.http_check_frequency,
                      args.manifest_url_ca)
            if args.manifest_url else None
        )
    except ValueError as exc:
        print(f"lab.runner: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        bin_dir=os.path.abspath(args.bin_dir),
        logs_dir=os.path.abspath(args.logs),
        backoff_base=args.backoff_base,
        backoff_cap=max(args.backoff_cap, args.backoff_base),
        backoff_reset=args.backoff_reset,
        probe_time_scale=args.probe_time_scale,
        stop_grace=max(0.0, args.stop_grace),
    )
    config = ConfigWatcher(args.config or default_config_path(args.status),
                           args.http_check_frequency)
    runner = Runner(os.path.abspath(args.manifests), os.path.abspath(args.status), settings,
                    args.file_check_frequency, url_source, config)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("lab.runner").info("signal %d: shutting down", signum)
        runner.stop_event.set()
        runner.wake()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    runner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
