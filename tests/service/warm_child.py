"""Stands in for ``prefect.engine`` in the fork server's tests: a forked run that says what it
got (pid, folder, arguments, one variable) and then does what WARM_ACTION says."""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    print(f"run pid={os.getpid()} cwd={os.getcwd()} args={sys.argv[1:]} "
          f"value={os.environ.get('WARM_VALUE')}", flush=True)
    action = os.environ.get("WARM_ACTION", "exit:0")
    if action.startswith("exit:"):
        sys.exit(int(action.removeprefix("exit:")))
    if action == "trap-term":
        def stop(signum, frame):
            print(f"got signal {signum}", flush=True)
            sys.exit(7)

        signal.signal(signal.SIGTERM, stop)
        print("trapping", flush=True)
    if action == "kill-self":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(120)


if __name__ == "__main__":
    main()
