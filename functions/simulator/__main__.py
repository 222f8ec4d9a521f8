"""`python -m functions.simulator --host 127.0.0.1 --port 0`

Prints `SIMULATOR_READY http://HOST:PORT` once listening, so a parent process
can read the line and learn the port it picked.
"""
from __future__ import annotations

import argparse
import signal
import sys

from functions.simulator.server import make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.simulator",
                                     description="Local stand-in for Google's Operations REST API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)

    server = make_server(args.host, args.port)
    # SIGTERM (e.g. from a test fixture) should stop as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"SIMULATOR_READY {server.base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.state.wake.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
