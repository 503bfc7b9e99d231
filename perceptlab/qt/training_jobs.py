"""Training jobs: ``perceptlab train`` in a process of its own, watched from the GUI.

A job is started with ``QProcess.startDetached`` (a new session, so it can
outlive the window) and its JSON-lines progress goes to
``<out_dir>/events.jsonl`` (stderr to ``stderr.log``). The GUI tails
that file with a timer, so:

* a crash, an out-of-memory error or a kill in the job never takes the GUI
  down; the job's own ``error`` event (or the lack of a final event) says
  what happened;
* the window can be closed while a job keeps running, and a later session
  picks its progress up again from the same file;
* Cancel sends SIGINT, which the trainer turns into "finish the step, write
  last.pt, emit 'interrupted', exit 0"; a job that ignores it for
  ``KILL_AFTER_S`` seconds is killed.

The launch arguments are kept in ``<out_dir>/launch.json`` so Resume can
run the same command again with ``--resume``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

KILL_AFTER_S = 20.0

# Run by the detached interpreter: point stdout and stderr at the job's files,
# then become `perceptlab` (exec keeps the pid that QProcess reported).
_EXEC_WITH_REDIRECT = (
    "import os, sys\n"
    "flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND\n"
    "os.dup2(os.open(sys.argv[1], flags, 0o644), 1)\n"
    "os.dup2(os.open(sys.argv[2], flags, 0o644), 2)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'perceptlab.cli', *sys.argv[3:]])\n"
)
TERMINAL = ("done", "interrupted", "error")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    # A zombie (already exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class QtTrainingJob(QObject):
    """One training run's process and its event stream.

    Signals
    -------
    event(dict)
        Each JSON object the trainer printed, in order.
    finished(str)
        The final status: "completed", "cancelled" or "failed".
    """

    event = Signal(dict)
    finished = Signal(str)

    def __init__(self, out_dir: str | os.PathLike, name: str, parent=None):
        super().__init__(parent)
        self.out_dir = Path(out_dir)
        self.name = name
        self.pid: int | None = None
        self.events: list[dict] = []
        self.status = "idle"
        self.error: str | None = None
        self._offset = 0
        self._partial = b""
        self._cancel_at: float | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self.poll)

    # -- paths ---------------------------------------------------------------
    @property
    def events_path(self) -> Path:
        return self.out_dir / "events.jsonl"

    @property
    def stderr_path(self) -> Path:
        return self.out_dir / "stderr.log"

    @property
    def launch_path(self) -> Path:
        return self.out_dir / "launch.json"

    # -- control ----------------------------------------------------------------
    def start(self, train_args: list[str], resume: bool = False) -> bool:
        """Launch ``perceptlab train <train_args> [--resume]``; False if it could not start."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            self.launch_path.write_text(json.dumps({"name": self.name, "args": train_args}, indent=2))
        args = ["train", *train_args, "--progress", "json"]
        if resume:
            args.append("--resume")
        with open(self.stderr_path, "ab") as fh:
            fh.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'start'} ---\n".encode())
        self._offset = self.events_path.stat().st_size if self.events_path.exists() else 0
        self._partial = b""
        ok, pid = QProcess.startDetached(
            sys.executable, ["-c", _EXEC_WITH_REDIRECT, str(self.events_path), str(self.stderr_path), *args],
            str(self.out_dir))
        if not ok:
            self.status, self.error = "failed", f"could not start {sys.executable}"
            self.finished.emit(self.status)
            return False
        self.pid = int(pid)
        (self.out_dir / "job.pid").write_text(str(self.pid))
        self.status, self.error, self._cancel_at = "running", None, None
        self._timer.start()
        return True

    @classmethod
    def attach(cls, out_dir: str | os.PathLike, name: str, parent=None) -> "QtTrainingJob":
        """Re-open a job started earlier (maybe by a previous session), replaying its events."""
        job = cls(out_dir, name, parent)
        pid_file = job.out_dir / "job.pid"
        job.pid = int(pid_file.read_text()) if pid_file.exists() else None
        job._offset = 0
        job.status = "running"
        job.poll()
        if job.status == "running":
            job._timer.start()
        return job

    def cancel(self) -> None:
        """Ask the trainer to stop cleanly (it keeps last.pt)."""
        if self.status != "running" or not self.pid:
            return
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        self._cancel_at = time.monotonic()

    def kill(self) -> None:
        if self.pid and pid_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)

    def launch_args(self) -> list[str] | None:
        try:
            return json.loads(self.launch_path.read_text())["args"]
        except (OSError, ValueError, KeyError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    # -- watching ---------------------------------------------------------------
    def poll(self) -> None:
        """Read new events; notice the end of the process."""
        try:
            with open(self.events_path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            data = b""
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            if not raw.strip():
                continue
            try:
                ev = json.loads(raw)
            except ValueError:
                continue  # a stray print; the log view shows stderr anyway
            if isinstance(ev, dict):
                self.events.append(ev)
                self.event.emit(ev)
                if ev.get("event") in TERMINAL:
                    self._finish(ev)
        if self.status != "running":
            return
        if not pid_alive(self.pid):
            self.poll_once_more_then_fail()
        elif self._cancel_at is not None and time.monotonic() - self._cancel_at > KILL_AFTER_S:
            self.kill()

    def poll_once_more_then_fail(self) -> None:
        # The process is gone; anything it printed last is in the file now.
        if self._partial.strip():
            self._partial += b"\n"
            before = self.status
            self.poll()
            if self.status != before:
                return
        if self.status == "running":
            self.error = "the training process ended without a final event (killed or crashed)"
            tail = self.log_tail(5)
            if tail:
                self.error += f": {tail.splitlines()[-1]}"
            self._set_status("failed")

    def _finish(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "done":
            self._set_status("completed")
        elif kind == "interrupted":
            self._set_status("cancelled")
        else:
            self.error = ev.get("message") or "training failed"
            self._set_status("failed")

    def _set_status(self, status: str) -> None:
        self.status = status
        self._timer.stop()
        self.finished.emit(status)

    # -- what the panel shows ---------------------------------------------------
    def last(self, kind: str) -> dict | None:
        for ev in reversed(self.events):
            if ev.get("event") == kind:
                return ev
        return None

    def checkpoint(self, which: str = "best") -> Path | None:
        p = self.out_dir / f"{which}.pt"
        return p if p.exists() else None
