"""Is there a usable audio output? Asked of a short-lived child process first.

``import sounddevice`` initialises PortAudio (``Pa_Initialize``), and with a
missing or broken ALSA configuration PortAudio's ALSA host API does not return
an error: it fails an ``assert`` and the whole process dies with SIGABRT, no
message. Run in the app's own process, that kills the window before it opens.

So the first question goes to a child: ``python -c "import sounddevice;
sounddevice.query_devices(...)"`` with a timeout of a few seconds. Only if the
child answers that an output device is there does the app's own process import
sounddevice. The answer is kept for the rest of the process (PortAudio reads
its configuration once, at initialisation, so a second ask would only repeat
the first); :func:`start_probe` asks in a background thread so a caller can
start it early and not wait for it.

Measured on a 2-core Linux machine: about 0.15 s (an interpreter start and the
sounddevice import), whether the device is there or PortAudio aborts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

PROBE_TIMEOUT_S = 5.0

# Run with ``python -c``; prints one JSON line and exits 0 unless PortAudio
# takes the process down. Kept free of perceptlab imports: it must be quick.
_PROBE_SCRIPT = r"""
import json, sys

def report(ok, **fields):
    print(json.dumps(dict(ok=ok, **fields)), flush=True)
    sys.exit(0)

try:
    import sounddevice as sd
except OSError as exc:
    report(False, kind="no-portaudio", detail=str(exc))
except ImportError as exc:
    report(False, kind="no-sounddevice", detail=str(exc))
except Exception as exc:
    report(False, kind="init", detail=str(exc))
try:
    dev = sd.query_devices(kind="output")
except Exception as exc:
    report(False, kind="no-device", detail=str(exc))
if not dev or int(dev.get("max_output_channels", 0)) < 1:
    report(False, kind="no-channel", detail="")
report(True, device=str(dev.get("name", "default")))
"""


@dataclass(frozen=True)
class AudioBackendStatus:
    """What the audio check found.

    Attributes
    ----------
    available : bool
        An output device can be opened in this process.
    reason : str
        Why not, in words for a user ("" when available).
    device : str
        The default output device's name ("" when not available).
    seconds : float
        How long the check took.
    """

    available: bool
    reason: str = ""
    device: str = ""
    seconds: float = 0.0


def _config_hint(env: dict | None = None) -> str:
    """Where to look when PortAudio fails to start: the ALSA configuration on Linux."""
    if not sys.platform.startswith("linux"):
        return "check the system's audio configuration"
    path = (os.environ if env is None else env).get("ALSA_CONFIG_PATH")
    if path:
        missing = "" if os.path.exists(path) else ", which does not exist"
        return f"check ALSA_CONFIG_PATH ({path}{missing}) / the ALSA configuration"
    return "check ALSA_CONFIG_PATH / the ALSA configuration (~/.asoundrc, /etc/asound.conf)"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _reason_from_answer(answer: dict, env: dict | None) -> str:
    kind, detail = answer.get("kind", ""), answer.get("detail", "")
    if kind == "no-portaudio":
        return f"PortAudio is not installed ({detail}); on Debian/Ubuntu: apt-get install libportaudio2"
    if kind == "no-sounddevice":
        return f"the sounddevice package is missing ({detail})"
    if kind == "init":
        return f"PortAudio could not initialise ({detail}); {_config_hint(env)}"
    if kind == "no-device":
        return f"no audio output device ({detail})"
    if kind == "no-channel":
        return "no audio output device with an output channel"
    return f"the audio check answered something unexpected ({answer})"


def probe_audio_backend(timeout: float = PROBE_TIMEOUT_S, env: dict | None = None) -> AudioBackendStatus:
    """Ask a child process whether PortAudio starts and has an output device.

    Never imports sounddevice here, so a PortAudio abort costs the child, not
    the caller. Not cached: see :func:`backend_status` for the process's answer.

    Parameters
    ----------
    timeout : float
        Seconds to wait for the child; a child that hangs is killed and the
        output counts as unavailable.
    env : dict, optional
        The child's environment (default: this process's).
    """
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE_SCRIPT], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return AudioBackendStatus(False, f"the audio system did not answer within {timeout:g} s "
                                         f"(PortAudio hung while initialising); {_config_hint(env)}",
                                  seconds=time.perf_counter() - t0)
    except OSError as exc:
        return AudioBackendStatus(False, f"could not run the audio check ({exc})", seconds=time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    hint = _last_line(out.stderr)
    said = f"; it said: {hint}" if hint else ""
    if out.returncode < 0:
        name = _signal_name(-out.returncode)
        return AudioBackendStatus(False, f"PortAudio aborted while initialising (signal {name}); "
                                         f"{_config_hint(env)}{said}", seconds=seconds)
    answer = None
    for line in reversed(out.stdout.splitlines()):
        try:
            answer = json.loads(line)
            break
        except ValueError:
            continue
    if out.returncode != 0 or not isinstance(answer, dict):
        return AudioBackendStatus(False, f"the audio check failed (exit status {out.returncode}){said}",
                                  seconds=seconds)
    if answer.get("ok"):
        return AudioBackendStatus(True, device=str(answer.get("device", "default")), seconds=seconds)
    return AudioBackendStatus(False, _reason_from_answer(answer, env), seconds=seconds)


# The process's answer, asked once.
_lock = threading.Lock()
_done = threading.Event()
_thread: threading.Thread | None = None
_status: AudioBackendStatus | None = None


def _run_probe() -> None:
    global _status
    try:
        result = probe_audio_backend()
    except Exception as exc:  # the answer must come, whatever went wrong asking
        result = AudioBackendStatus(False, f"the audio check failed ({exc})")
    _status = result
    _done.set()


def start_probe() -> None:
    """Start the check in a background thread, once per process; returns at once."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run_probe, name="perceptlab-audio-probe", daemon=True)
            _thread.start()


def backend_status(wait: bool = True) -> AudioBackendStatus | None:
    """The process's answer (cached); starts the check if nobody has.

    With ``wait`` false, returns None while the check is still running.
    """
    start_probe()
    if wait:
        _done.wait()
    return _status if _done.is_set() else None


def forget_status() -> None:
    """Drop the cached answer so the next call asks again (after the environment changed, in tests)."""
    global _thread, _status
    with _lock:
        if _thread is not None:
            _thread.join()
        _thread, _status = None, None
        _done.clear()
