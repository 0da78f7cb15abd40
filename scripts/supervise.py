"""`make run`'s process supervisor: every process of the Procfile, each restarted if it dies.

    python scripts/supervise.py [--procfile Procfile]

honcho (what `make run` used before) ends every process when one exits, so a crashed
loop worker took the web server, the control worker and beat down with it. Here a
process that dies is started again, after a delay that doubles with each quick death (1 s
up to 30 s; a process that ran a minute starts again at 1 s), with a line saying what died,
how, and when it comes back; the others keep running.

Ctrl-C (SIGINT) or SIGTERM stops everything: each process group gets SIGTERM (a Celery
worker's warm shutdown ends its loops as `stopped`), whatever is left after
STOP_GRACE_SECONDS gets SIGKILL, and the supervisor exits 0, a stop that was asked for.

The Procfile is read with honcho's parser and the output is printed with honcho's printer,
so lines look as they did: `12:00:01 worker | ...`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from honcho.colour import get_colours
from honcho.environ import parse_procfile
from honcho.printer import Message, Printer

ROOT = Path(__file__).resolve().parent.parent
# The first restart waits FIRST_DELAY; each death within STABLE_SECONDS of its start
# doubles the wait, up to MAX_DELAY. A process that ran STABLE_SECONDS starts over at FIRST_DELAY.
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
STABLE_SECONDS = 60.0
# After SIGTERM, how long the processes get to finish before SIGKILL.
STOP_GRACE_SECONDS = 8.0
SELF = "supervise"


@dataclass
class Child:
    name: str
    cmd: str
    colour: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    delay: float = FIRST_DELAY
    restart_at: float | None = None  # monotonic time of the pending restart
    readers: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    def __init__(self, procfile: Path, out=sys.stdout) -> None:
        processes = parse_procfile(procfile.read_text()).processes
        if not processes:
            raise SystemExit(f"{SELF}: {procfile} names no process (lines are 'name: command').")
        colours = get_colours()
        self.children = [Child(name, cmd, next(colours)) for name, cmd in processes.items()]
        self.printer = Printer(out, width=max(len(SELF), *(len(c.name) for c in self.children)))
        self.print_lock = threading.Lock()
        self.stop_signal: int | None = None
        self.wake = threading.Event()

    # --- output ---------------------------------------------------------------------------

    def say(self, text: str, name: str = SELF, colour: int | None = None) -> None:
        with self.print_lock:
            self.printer.write(Message("line", text, datetime.datetime.now(), name, colour))

    def _relay(self, child: Child, proc: subprocess.Popen) -> None:
        for line in iter(proc.stdout.readline, b""):
            self.say(line.decode("utf-8", "replace"), child.name, child.colour)
        proc.stdout.close()

    # --- processes ------------------------------------------------------------------------

    def start(self, child: Child) -> None:
        # Its own session and process group: Ctrl-C at the terminal reaches only this
        # supervisor, which stops the children in order; a whole group can be signalled.
        # `exec`: the shell expands $PORT and the like, then becomes the process, so its
        # pid, exit code and death are the process's own.
        proc = subprocess.Popen(
            f"exec {child.cmd}",
            shell=True,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child.proc, child.started, child.restart_at = proc, time.monotonic(), None
        reader = threading.Thread(
            target=self._relay, args=(child, proc), name=f"out-{child.name}", daemon=True
        )
        reader.start()
        child.readers.append(reader)
        self.say(f"{child.name} started (pid {proc.pid})")

    def _signal_group(self, child: Child, sig: int) -> None:
        if child.proc is None:
            return
        try:
            os.killpg(child.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _died(self, child: Child) -> None:
        """A process exited by itself: say so, and schedule its restart."""
        ran = time.monotonic() - child.started
        code = child.proc.returncode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        # Anything it left in its process group goes too, so the restart starts clean.
        self._signal_group(child, signal.SIGKILL)
        child.delay = FIRST_DELAY if ran >= STABLE_SECONDS else child.delay
        child.restart_at = time.monotonic() + child.delay
        child.restarts += 1
        self.say(
            f"{child.name} died ({how}) after {ran:.0f} s; restarting it in {child.delay:.0f} s "
            f"(restart {child.restarts}); the other processes keep running"
        )
        child.delay = min(MAX_DELAY, child.delay * 2)

    def run(self) -> int:
        def stop(signum, _frame) -> None:
            self.stop_signal = signum
            self.wake.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for child in self.children:
            self.start(child)
        while self.stop_signal is None:
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is None and child.proc.poll() is not None:
                    self._died(child)
                elif child.restart_at is not None and now >= child.restart_at:
                    self.start(child)
            self.wake.wait(0.2)
        return self.shutdown()

    def shutdown(self) -> int:
        self.say(f"{signal.Signals(self.stop_signal).name} received: stopping every process")
        running = [c for c in self.children if c.restart_at is None and c.proc.poll() is None]
        for child in running:
            self._signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while any(c.proc.poll() is None for c in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for child in running:
            if child.proc.poll() is None:
                self.say(f"{child.name} did not stop within {STOP_GRACE_SECONDS:.0f} s: SIGKILL")
                self._signal_group(child, signal.SIGKILL)
                child.proc.wait()
            else:
                self._signal_group(child, signal.SIGKILL)  # what it left behind in its group
        for child in self.children:
            for reader in child.readers:
                reader.join(timeout=2)
        self.say("stopped")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    args = parser.parse_args(argv)
    return Supervisor(args.procfile).run()


if __name__ == "__main__":
    sys.exit(main())
