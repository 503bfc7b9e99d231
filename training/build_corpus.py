#!/usr/bin/env python3
"""Build the general training corpus and its held-out evaluation sets.

Everything comes from Debian packages installed on this machine; nothing is
downloaded. The script writes, under ``--out DIR`` (default ``corpus``)::

    DIR/train/<kind>/<label>/<file>.flac   kinds: instruments, drums, music, sounds
    DIR/eval/instruments/<family>/<program>-<name>-<phrase>.flac
    DIR/eval/drums/<kind>/<name>.flac
    DIR/eval/music/<track>/<name>.flac
    DIR/dev/instruments/<family>/<program>-<name>-<phrase>.flac
    DIR/manifest.json
    DIR/train_files.txt

Evaluation data are disjoint from training data by construction:

- instruments: evaluation clips are rendered with FluidR3_GM.sf2 only; training
  clips with other soundfonts, leaving out every preset of those fonts whose
  samples carry FluidR3 sample names (MuseScore_General is partly built from
  FluidR3);
- drums: a fixed set of whole Hydrogen kits is held out; a training sample
  whose bytes equal a held-out sample is dropped as well;
- music: whole tracks are held out (and a track that is an edit of another is
  kept on the same side as it).

The development set ``dev/instruments`` mirrors the instrument evaluation on
a third sample set that training never reads either: the freepats patches,
rendered with timidity. Choices made after training (which encoder maps an
embedding reads) are made on it, so that they are tested on instruments no
encoder heard without looking at the evaluation sets.

The output is deterministic: every random choice is drawn from a generator
seeded by the name of the thing it decides. ``--resume`` keeps files that are
already written. ``--quick`` builds a tiny version for tests.

Run ``python training/build_corpus.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 44100
MIN_CLIP_S = 1.0
MAX_CLIP_S = 30.0
SILENCE_PEAK = 10 ** (-60 / 20)  # a clip whose peak stays below -60 dBFS is skipped
SILENCE_RMS = 10 ** (-70 / 20)  # ... or whose RMS stays below -70 dBFS
PARTS = (
    "eval-instruments",
    "eval-drums",
    "eval-music",
    "dev-instruments",
    "train-instruments",
    "train-drums",
    "train-music",
    "train-sounds",
)


class CorpusError(RuntimeError):
    """A source the build needs is missing or unusable."""


# --------------------------------------------------------------------------
# sources and their licences (from /usr/share/doc/<package>/copyright)
# --------------------------------------------------------------------------

FLUIDSYNTH_PACKAGE = "fluidsynth"
TIMIDITY_PACKAGE = "timidity"
# The development instruments: GUS patches, rendered with timidity, never read by training.
DEV_PATCHES = {
    "id": "freepats",
    "package": "freepats",
    "config": "/etc/timidity/freepats.cfg",
    "licence": "GPL-2+ with composition exception",
}
EVAL_FONT = {
    "id": "fluidr3",
    "package": "fluid-soundfont-gm",
    "path": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "licence": "MIT",
}
# (required, font).  MuseScore_General and TimGM6mb are required; the two
# others add variety when installed.
TRAIN_FONTS = [
    (True, {
        "id": "musescore",
        "package": "musescore-general-soundfont",
        "path": "/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
        "alt_paths": ["/usr/share/sounds/sf3/MuseScore_General.sf3",
                      "/usr/share/sounds/sf2/MuseScore_General.sf2"],
        "licence": "MIT (parts CC0 / public domain)",
    }),
    (True, {
        "id": "timgm6mb",
        "package": "timgm6mb-soundfont",
        "path": "/usr/share/sounds/sf2/TimGM6mb.sf2",
        "licence": "GPL-2",
    }),
    (False, {
        "id": "csound-gm",
        "package": "csound-soundfont",
        "path": "/usr/share/sounds/sf2/sf_GMbank.sf2",
        "licence": "public-domain",
    }),
    (False, {
        "id": "opl3",
        "package": "opl3-soundfont",
        "path": "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2",
        "licence": "CC-BY-SA-4.0",
    }),
]
# Phrases per (font, program) in the training set.
TRAIN_PHRASES = {"musescore": 2, "timgm6mb": 2, "csound-gm": 1, "opl3": 1}
# A training preset is left out when at least this share of its samples carry
# a sample name that also occurs in FluidR3_GM.sf2.
FLUID_OVERLAP_MAX = 0.5

HYDROGEN_PACKAGE = "hydrogen-drumkits"
HYDROGEN_DIR = Path("/usr/share/hydrogen/data/drumkits")
# Kit directory -> licence, as stated in hydrogen-drumkits' copyright file.
HYDROGEN_LICENCES = {
    "Audiophob": "CC0",
    "BJA_Pacific": "CC-BY-SA-3.0-us",
    "ColomboAcousticDrumkit": "GPL-2+ with composition exception",
    "ElectricEmpireKit": "GPL-2+",
    "ForzeeStereo": "GPL-2",
    "Gimme A Hand 1.0": "GPL-2",
    "HardElectro1": "GPL-2+",
    "Millo-Drums_v.1": "GPL-2",
    "Millo_MultiLayered2": "GPL-2",
    "Millo_MultiLayered3": "GPL-2",
    "The Black Pearl 1.0": "GPL-2",
    "VariBreaks": "GPL-2+",
    "circAfrique v4": "CC-BY-SA-3.0",
    "rumpf_kit_z01_h2": "CC-BY-3.0",
}
# Whole kits held out for evaluation: two acoustic multi-layer kits from
# different makers and one electronic kit, chosen so that each of the six
# evaluated kinds has enough distinct samples. Every other kit may be used for
# training; the three Millo kits share their recordings and stay together on
# the training side.
HELD_OUT_KITS = ("ForzeeStereo", "The Black Pearl 1.0", "HardElectro1")
DRUM_KINDS = ("kick", "snare", "hihat-closed", "hihat-open", "tom", "cymbal")
EVAL_DRUMS_PER_KIND = 12
MAX_DRUM_S = 3.0

MUSIC_SOURCES = {
    "wesnoth": {
        "package": "wesnoth-1.16-music",
        "dir": "/usr/share/games/wesnoth/1.16/data/core/music",
        "pattern": "*.ogg",
        "licence": "GPL-2+",
    },
    "warzone": {
        "package": "warzone2100-music",
        "dir": "/usr/share/games/warzone2100/music",
        "pattern": "*.opus",
        "licence": "GPL-2+",
    },
}
# Aftermath album (all but track3_enhanced): its own license.txt.
WARZONE_AFTERMATH_LICENCE = "CC-BY-SA-3.0+ or GPL-2+"
# Tracks that are edits of one another; a group never straddles the split.
MUSIC_GROUPS = (
    ("warzone/albums/original_soundtrack/track3.opus",
     "warzone/albums/aftermath_soundtrack/track3_enhanced.opus"),
    ("warzone/menu.opus", "warzone/albums/aftermath_soundtrack/menu_enhanced.opus"),
    ("wesnoth/frantic.ogg", "wesnoth/frantic-old.ogg"),
)
EVAL_TRACKS_PER_SOURCE = 10
EVAL_SEGMENTS = 5
EVAL_SEGMENT_S = 6.0
MIN_EVAL_TRACK_S = 60.0
TRAIN_MUSIC_S = 3600.0

SONIC_PI = {"package": "sonic-pi-samples", "dir": "/usr/share/sonic-pi/samples"}
OPENSFX = {
    "package": "openttd-opensfx",
    "path": "/usr/share/games/openttd/baseset/opensfx/opensfx.cat",
}
# Optional extra everyday sounds: (package, licence, how to find the files).
EXTRA_SOUNDS = {
    "freedesktop": {"package": "sound-theme-freedesktop",
                    "dir": "/usr/share/sounds/freedesktop/stereo", "licence": None},
    "wesnoth-sfx": {"package": "wesnoth-1.16-data",
                    "dir": "/usr/share/games/wesnoth/1.16/data", "licence": "GPL-2+"},
    "warzone-sfx": {"package": "warzone2100-data",
                    "path": "/usr/share/games/warzone2100/base.wz", "licence": "GPL-2+"},
}

GM_FAMILIES = (
    "piano", "chromatic-percussion", "organ", "guitar", "bass", "strings",
    "ensemble", "brass", "reed", "pipe", "synth-lead", "synth-pad",
    "synth-effects", "ethnic", "percussive", "sound-effects",
)
EVAL_FAMILIES = GM_FAMILIES[:10]
#: Phrases per program in the held-out instrument sets (evaluation and development). Several
#: phrases of one program let retrieval ask both "the same instrument, other notes" (plain
#: leave-one-out) and "the same family, another instrument" (neighbours of the same program
#: skipped: ``perceptlab retrieval --source-pattern '^[0-9]+'``).
HELD_OUT_PHRASES = 4
#: The pattern that takes a held-out clip's program from its file name.
HELD_OUT_SOURCE_PATTERN = "^[0-9]+"
GM_PROGRAMS = (
    "acoustic grand piano", "bright acoustic piano", "electric grand piano",
    "honky-tonk piano", "electric piano 1", "electric piano 2", "harpsichord",
    "clavinet", "celesta", "glockenspiel", "music box", "vibraphone", "marimba",
    "xylophone", "tubular bells", "dulcimer", "drawbar organ", "percussive organ",
    "rock organ", "church organ", "reed organ", "accordion", "harmonica",
    "tango accordion", "nylon guitar", "steel guitar", "jazz guitar",
    "clean guitar", "muted guitar", "overdriven guitar", "distortion guitar",
    "guitar harmonics", "acoustic bass", "fingered bass", "picked bass",
    "fretless bass", "slap bass 1", "slap bass 2", "synth bass 1", "synth bass 2",
    "violin", "viola", "cello", "contrabass", "tremolo strings",
    "pizzicato strings", "orchestral harp", "timpani", "string ensemble 1",
    "string ensemble 2", "synth strings 1", "synth strings 2", "choir aahs",
    "voice oohs", "synth voice", "orchestra hit", "trumpet", "trombone", "tuba",
    "muted trumpet", "french horn", "brass section", "synth brass 1",
    "synth brass 2", "soprano sax", "alto sax", "tenor sax", "baritone sax",
    "oboe", "english horn", "bassoon", "clarinet", "piccolo", "flute",
    "recorder", "pan flute", "blown bottle", "shakuhachi", "whistle", "ocarina",
    "square lead", "sawtooth lead", "calliope lead", "chiff lead",
    "charang lead", "voice lead", "fifths lead", "bass and lead", "new age pad",
    "warm pad", "polysynth pad", "choir pad", "bowed pad", "metallic pad",
    "halo pad", "sweep pad", "rain", "soundtrack", "crystal", "atmosphere",
    "brightness", "goblins", "echoes", "sci-fi", "sitar", "banjo", "shamisen",
    "koto", "kalimba", "bagpipe", "fiddle", "shanai", "tinkle bell", "agogo",
    "steel drums", "woodblock", "taiko drum", "melodic tom", "synth drum",
    "reverse cymbal", "guitar fret noise", "breath noise", "seashore",
    "bird tweet", "telephone ring", "helicopter", "applause", "gunshot",
)
# Playable range (lowest, highest MIDI note) per family, with program overrides.
FAMILY_RANGE = {
    "piano": (45, 84), "chromatic-percussion": (60, 96), "organ": (43, 84),
    "guitar": (40, 76), "bass": (28, 55), "strings": (43, 84),
    "ensemble": (48, 79), "brass": (48, 79), "reed": (50, 84), "pipe": (60, 96),
    "synth-lead": (48, 84), "synth-pad": (45, 79), "synth-effects": (48, 84),
    "ethnic": (48, 84), "percussive": (45, 72), "sound-effects": (48, 72),
}
PROGRAM_RANGE = {
    40: (55, 96), 41: (48, 84), 42: (36, 72), 43: (28, 55), 46: (36, 91),
    47: (40, 55), 56: (55, 82), 57: (40, 72), 58: (28, 55), 59: (55, 82),
    60: (41, 77), 64: (56, 87), 65: (49, 80), 66: (44, 75), 67: (36, 68),
    68: (58, 91), 69: (52, 81), 70: (34, 72), 71: (50, 91), 72: (74, 102),
    73: (60, 96), 74: (60, 91), 75: (60, 91), 76: (60, 84), 77: (55, 84),
    79: (60, 84), 14: (60, 77), 8: (60, 96), 9: (72, 100), 13: (65, 96),
}
POLYPHONIC = {"piano", "organ", "guitar", "ensemble", "synth-pad"}
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
}


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def seeded_rng(*key) -> np.random.Generator:
    """A generator seeded by a stable hash of ``key``.

    Parameters
    ----------
    *key
        Values whose ``str`` names the decision being made.

    Returns
    -------
    numpy.random.Generator
    """
    text = "\x1f".join(str(k) for k in key).encode("utf-8")
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text).digest()[:8], "little"))


def stable_order(items, *key):
    """Sort ``items`` by a hash of ``(key, item)``: a fixed pseudo-random order."""
    return sorted(items, key=lambda it: hashlib.sha256(
        ("\x1f".join(map(str, key)) + "\x1f" + str(it)).encode("utf-8")).hexdigest())


def slug(text: str) -> str:
    """Lower-case ``text`` with every run of other characters made one ``-``."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out or "x"


def sha256_file(path) -> str:
    """The hex sha256 of the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def need_path(path, package: str, what: str) -> Path:
    """Return ``path`` or raise a :class:`CorpusError` naming the package.

    Parameters
    ----------
    path : str or Path
        File or folder the build needs.
    package : str
        The Debian package that provides it.
    what : str
        Short description for the message.
    """
    p = Path(path)
    if not p.exists():
        raise CorpusError(f"{what} not found at {p}: install with apt-get install -y {package}")
    return p


def need_command(name: str, package: str) -> str:
    """The path of the command ``name``, or a :class:`CorpusError` naming its package."""
    exe = shutil.which(name)
    if exe is None:
        raise CorpusError(f"{name} command not found on PATH: install with apt-get install -y {package}")
    return exe


def need_fluidsynth() -> str:
    return need_command("fluidsynth", FLUIDSYNTH_PACKAGE)


def need_timidity() -> str:
    return need_command("timidity", TIMIDITY_PACKAGE)


def freepats_programs(config=None) -> list[int]:
    """GM programs that freepats' timidity configuration binds in ``bank 0``.

    Only those are rendered: timidity reads the system configuration first
    (which may bind another sample set), and a program the freepats file
    binds is played by freepats whatever came before.
    """
    cfg = need_path(config or DEV_PATCHES["config"], DEV_PATCHES["package"], "freepats timidity configuration")
    progs, in_bank0 = set(), False
    for line in cfg.read_text(errors="replace").splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] in ("bank", "drumset"):
            in_bank0 = words[0] == "bank" and words[1:2] == ["0"]
        elif in_bank0 and words[0].isdigit() and len(words) > 1 and words[1].endswith(".pat"):
            progs.add(int(words[0]))
    if not progs:
        raise CorpusError(f"{cfg}: binds no program of bank 0 to a patch; reinstall with "
                          f"apt-get install --reinstall -y {DEV_PATCHES['package']}")
    return sorted(progs)


def to_stereo_44k(audio: np.ndarray, sr: int) -> np.ndarray:
    """Float32 (frames, channels) at 44.1 kHz, at most two channels."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.shape[1] > 2:
        a = a[:, :2]
    if sr != SR and a.shape[0]:
        a = soxr.resample(a, sr, SR).astype(np.float32)
        if a.ndim == 1:
            a = a[:, None]
    return a


def is_silent(audio: np.ndarray) -> bool:
    """True when the clip's peak is below -60 dBFS or its RMS below -70 dBFS."""
    if audio.size == 0:
        return True
    peak = float(np.max(np.abs(audio)))
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return peak < SILENCE_PEAK or rms < SILENCE_RMS


def fade_out(audio: np.ndarray, seconds: float = 0.02) -> np.ndarray:
    """A short linear fade at the end so a cut does not click."""
    n = min(len(audio), int(seconds * SR))
    if n > 1:
        audio = audio.copy()
        audio[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
    return audio


def pad_to_min(audio: np.ndarray, seconds: float = MIN_CLIP_S) -> np.ndarray:
    """Append silence so the clip lasts at least ``seconds``."""
    n = int(math.ceil(seconds * SR))
    if len(audio) < n:
        audio = np.concatenate([audio, np.zeros((n - len(audio), audio.shape[1]), np.float32)])
    return audio


def trim_trailing(audio: np.ndarray, floor_db: float = -60.0, max_s: float | None = None) -> np.ndarray:
    """Cut the tail below ``floor_db`` relative to the loudest 10 ms frame.

    Parameters
    ----------
    audio : ndarray, shape (frames, channels)
    floor_db : float
        Frames quieter than this, relative to the loudest frame, count as
        silence once no louder frame follows.
    max_s : float, optional
        Longest result; a clip cut here gets a short fade.
    """
    hop = int(0.01 * SR)
    if len(audio) <= hop:
        return audio
    mono = np.mean(audio, axis=1)
    n = len(mono) // hop
    frames = mono[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.nonzero(rms > rms.max() * 10 ** (floor_db / 20))[0]
    end = len(audio) if loud.size == 0 else min(len(audio), (loud[-1] + 2) * hop)
    out = audio[:end]
    if max_s is not None and len(out) > int(max_s * SR):
        out = fade_out(out[: int(max_s * SR)], 0.05)
    return out


def write_flac(path: Path, audio: np.ndarray) -> None:
    """Write 16-bit FLAC at 44.1 kHz (values outside [-1, 1] are clipped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(audio, -1.0, 1.0), SR, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def read_segment(src, start_s: float = 0.0, dur_s: float | None = None) -> np.ndarray:
    """Read part of an audio file (path or bytes) as float32 stereo at 44.1 kHz."""
    fobj = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else str(src)
    with sf.SoundFile(fobj) as f:
        sr = f.samplerate
        start = int(round(start_s * sr))
        if start:
            f.seek(start)
        frames = -1 if dur_s is None else int(round(dur_s * sr))
        data = f.read(frames, dtype="float32", always_2d=True)
    return to_stereo_44k(data, sr)


# --------------------------------------------------------------------------
# copyright files
# --------------------------------------------------------------------------

def dep5_stanzas(copyright_path) -> list[tuple[list[str], str]]:
    """``(file patterns, licence)`` of each ``Files:`` stanza of a DEP-5 file."""
    text = Path(copyright_path).read_text(encoding="utf-8", errors="replace")
    out = []
    for para in re.split(r"\n\s*\n", text):
        files, licence, field_name = [], None, None
        for line in para.splitlines():
            m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if m:
                field_name = m.group(1).lower()
                if field_name == "files":
                    files.extend(m.group(2).split())
                elif field_name == "license" and licence is None:
                    licence = m.group(2).strip()
            elif line.startswith((" ", "\t")) and field_name == "files":
                files.extend(line.split())
        if files and licence:
            out.append((files, licence))
    return out


def licence_by_basename(stanzas, name: str, star: bool = True) -> str | None:
    """The licence DEP-5 stanzas give file ``name``.

    The last stanza whose pattern's file part matches ``name`` wins; with
    ``star``, a file no such stanza names gets the licence of the ``Files: *``
    stanza, as the copyright format says.

    Parameters
    ----------
    stanzas : list of (patterns, licence)
        As from :func:`dep5_stanzas`.
    name : str
        The file's base name.
    star : bool

    Returns
    -------
    str or None
        None when no stanza covers the file.
    """
    found, default = None, None
    for patterns, licence in stanzas:
        for pat in patterns:
            base = pat.rsplit("/", 1)[-1]
            if pat == "*":
                default = licence
            elif base.strip("*?") and fnmatch.fnmatchcase(name, base):
                found = licence
    return found if found is not None else (default if star else None)


# --------------------------------------------------------------------------
# MIDI: phrases and the bytes of a standard MIDI file
# --------------------------------------------------------------------------

TICKS_PER_BEAT = 480
TEMPO_US = 500000  # 120 bpm, so one second is 960 ticks
TICKS_PER_S = TICKS_PER_BEAT * 1_000_000 // TEMPO_US


@dataclass
class Phrase:
    """A short melodic phrase for one GM program.

    Attributes
    ----------
    program : int
        GM program, 0-127.
    notes : list of (start_s, dur_s, pitch, velocity)
    length_s : float
        Length of the clip cut around the phrase (notes plus release).
    """

    program: int
    notes: list = field(default_factory=list)
    length_s: float = 6.0
    bpm: float = 120.0
    scale: str = "major"


def family_of(program: int) -> str:
    return GM_FAMILIES[program // 8]


def make_phrase(rng: np.random.Generator, program: int, min_s: float = 4.0,
                max_s: float = 8.0) -> Phrase:
    """A random melodic phrase in the program's range.

    Notes walk a random scale from a random root; tempo, rhythm, velocity and
    articulation vary from phrase to phrase. The phrase plus one second of
    release fits in ``[min_s, max_s]``.

    Parameters
    ----------
    rng : numpy.random.Generator
    program : int
        GM program, 0-127.
    min_s, max_s : float
        Bounds of the clip length.
    """
    if not 0 <= program < 128:
        raise ValueError(f"GM program {program} is outside 0-127")
    fam = family_of(program)
    lo, hi = PROGRAM_RANGE.get(program, FAMILY_RANGE[fam])
    scale_name = str(rng.choice(sorted(SCALES)))
    root = int(rng.integers(0, 12))
    pitches = [p for p in range(lo, hi + 1) if (p - root) % 12 in SCALES[scale_name]]
    bpm = float(rng.uniform(70, 160))
    beat = 60.0 / bpm
    release = 1.0
    target = float(rng.uniform(min_s, max_s)) - release
    legato = float(rng.uniform(0.55, 1.0))
    base_vel = int(rng.integers(45, 116))
    idx = int(rng.integers(len(pitches) // 4, max(len(pitches) // 4 + 1, 3 * len(pitches) // 4)))
    durations = np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
    weights = np.array([0.15, 0.3, 0.1, 0.25, 0.1, 0.1])
    steps = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4])
    step_w = np.array([0.04, 0.08, 0.16, 0.2, 0.04, 0.2, 0.16, 0.08, 0.04])
    poly = fam in POLYPHONIC
    t = 0.0
    notes = []
    while True:
        d = float(rng.choice(durations, p=weights)) * beat
        if t + d > target and notes:
            break
        if notes and rng.random() < 0.08:  # a rest
            t += d
            continue
        idx = int(np.clip(idx + int(rng.choice(steps, p=step_w)), 0, len(pitches) - 1))
        vel = int(np.clip(base_vel + rng.integers(-12, 13), 1, 127))
        dur = max(0.05, min(d * legato, target - t))
        notes.append((round(t, 4), round(dur, 4), pitches[idx], vel))
        if poly and rng.random() < 0.25:
            below = idx - int(rng.choice([2, 4]))
            if below >= 0:
                notes.append((round(t, 4), round(dur, 4), pitches[below], max(1, vel - 10)))
        t += d
    span = max(n[0] + n[1] for n in notes)
    length = float(np.clip(span + release, min_s, max_s))
    return Phrase(program=program, notes=notes, length_s=round(length, 4), bpm=round(bpm, 2),
                  scale=scale_name)


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_file_bytes(events) -> bytes:
    """A format-0 standard MIDI file at 120 bpm from ``(time_s, status_bytes)``.

    Parameters
    ----------
    events : iterable of (float, bytes)
        Channel messages with absolute times in seconds. Events at the same
        time keep their order.

    Returns
    -------
    bytes
    """
    track = bytearray(b"\x00\xff\x51\x03" + TEMPO_US.to_bytes(3, "big"))
    order = sorted(enumerate(events), key=lambda e: (int(round(e[1][0] * TICKS_PER_S)), e[0]))
    last = 0
    for _, (t, msg) in order:
        tick = int(round(t * TICKS_PER_S))
        track += _vlq(tick - last) + bytes(msg)
        last = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


GAP_S = 2.5  # silence between phrases of one render, for reverb to die


def phrase_schedule(phrases) -> tuple[list, list]:
    """Lay phrases end to end on channel 0: the MIDI events and slot starts.

    Each slot begins with a controller reset and a program change, and ends
    with "all sound off" so nothing rings into the next slot.
    """
    events, starts = [], []
    t = 0.5
    for ph in phrases:
        starts.append(t)
        events.append((t - 0.2, bytes([0xB0, 121, 0])))
        events.append((t - 0.2, bytes([0xB0, 7, 100])))
        events.append((t - 0.2, bytes([0xB0, 10, 64])))
        events.append((t - 0.1, bytes([0xC0, ph.program])))
        for start, dur, pitch, vel in ph.notes:
            events.append((t + start, bytes([0x90, pitch, vel])))
            events.append((t + start + dur, bytes([0x80, pitch, 0])))
        events.append((t + ph.length_s + 0.05, bytes([0xB0, 120, 0])))
        t += ph.length_s + GAP_S
    events.append((t, bytes([0xB0, 123, 0])))
    return events, starts


def render_job(job) -> list:
    """Render one batch of phrases and write one FLAC each.

    Parameters
    ----------
    job : dict
        ``font`` (a soundfont path, rendered with fluidsynth, or a timidity
        configuration when ``synth`` is ``"timidity"``), ``items`` (list of
        (Phrase, output path)).

    Returns
    -------
    list of (str, bool)
        Each output path and whether it was written (False: near-silent).
    """
    synth = job.get("synth", "fluidsynth")
    phrases = [ph for ph, _ in job["items"]]
    events, starts = phrase_schedule(phrases)
    with tempfile.TemporaryDirectory(prefix="corpus-render-") as tmp:
        mid = Path(tmp) / "in.mid"
        wav = Path(tmp) / "out.wav"
        mid.write_bytes(midi_file_bytes(events))
        env = None
        if synth == "timidity":
            # --preserve-silence: timidity otherwise drops the lead-in, and the clips are cut by time.
            # HOME in the scratch folder: no ~/.timidity.cfg of the user's joins in.
            cmd = [need_timidity(), "-c", job["font"], "-Ow", "--preserve-silence", "-s", str(SR),
                   "-o", str(wav), str(mid)]
            env = dict(os.environ, HOME=tmp)
        else:
            cmd = [need_fluidsynth(), "-ni", "-q", "-o", "synth.dynamic-sample-loading=1", "-F", str(wav),
                   "-r", str(SR), "-g", "0.6", job["font"], str(mid)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        if proc.returncode != 0 or not wav.exists():
            raise CorpusError(f"{synth} failed on {job['font']} (exit {proc.returncode}): "
                              f"{proc.stdout.strip()[-500:]}")
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = to_stereo_44k(audio, sr)
    out = []
    for (ph, path), t0 in zip(job["items"], starts):
        a, b = int(round(t0 * SR)), int(round((t0 + ph.length_s) * SR))
        clip = audio[a:b]
        if len(clip) < b - a:
            clip = np.concatenate([clip, np.zeros((b - a - len(clip), 2), np.float32)])
        if is_silent(clip):
            out.append((str(path), False))
            continue
        write_flac(Path(path), fade_out(clip))
        out.append((str(path), True))
    return out


# --------------------------------------------------------------------------
# SoundFont sample names (to keep FluidR3 material out of training)
# --------------------------------------------------------------------------

def soundfont_presets(path) -> dict:
    """Map ``(bank, program)`` to ``(preset name, set of sample names)``.

    Reads the ``pdta`` hydra of an SF2/SF3 file: presets -> instruments ->
    samples through the generator lists.
    """
    chunks = {}
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
            raise CorpusError(f"{path} is not a SoundFont (no RIFF sfbk header)")
        size = struct.unpack("<I", head[4:8])[0]
        pos = 12
        while pos < size + 8:
            f.seek(pos)
            hdr = f.read(12)
            if len(hdr) < 8:
                break
            cid, csz = hdr[:4], struct.unpack("<I", hdr[4:8])[0]
            if cid == b"LIST" and hdr[8:12] == b"pdta":
                body = f.read(csz - 4)
                p = 0
                while p + 8 <= len(body):
                    sid, ssz = body[p:p + 4].decode("latin1"), struct.unpack("<I", body[p + 4:p + 8])[0]
                    chunks[sid] = body[p + 8:p + 8 + ssz]
                    p += 8 + ssz + (ssz & 1)
            pos += 8 + csz + (csz & 1)
    if "phdr" not in chunks:
        raise CorpusError(f"{path}: no preset table (pdta/phdr) found")

    def recs(name, fmt):
        n = struct.calcsize(fmt)
        b = chunks[name]
        return [struct.unpack(fmt, b[i:i + n]) for i in range(0, len(b) - n + 1, n)]

    phdr, pbag, pgen = recs("phdr", "<20sHHHIII"), recs("pbag", "<HH"), recs("pgen", "<HH")
    inst, ibag, igen = recs("inst", "<20sH"), recs("ibag", "<HH"), recs("igen", "<HH")
    snames = [s[0].split(b"\0")[0].decode("latin1") for s in recs("shdr", "<20sIIIIIBbHH")]
    out = {}
    for i in range(len(phdr) - 1):
        name = phdr[i][0].split(b"\0")[0].decode("latin1")
        insts = {pgen[g][1] for b in range(phdr[i][3], phdr[i + 1][3])
                 for g in range(pbag[b][0], pbag[b + 1][0]) if pgen[g][0] == 41}
        samples = {snames[igen[g][1]] for ii in insts if ii + 1 < len(inst)
                   for b in range(inst[ii][1], inst[ii + 1][1])
                   for g in range(ibag[b][0], ibag[b + 1][0])
                   if igen[g][0] == 53 and igen[g][1] < len(snames)}
        out[(phdr[i][2], phdr[i][1])] = (name, samples)
    return out


def fluid_overlap_programs(font_path, eval_font_path) -> list[int]:
    """GM programs (bank 0) of a font that reuse FluidR3 sample names."""
    fluid = set().union(*(s for _, s in soundfont_presets(eval_font_path).values()))
    bad = []
    for (bank, prog), (_, samples) in soundfont_presets(font_path).items():
        if bank == 0 and samples and len(samples & fluid) / len(samples) >= FLUID_OVERLAP_MAX:
            bad.append(prog)
    return sorted(bad)


# --------------------------------------------------------------------------
# Hydrogen drum kits
# --------------------------------------------------------------------------

def drum_kind(name: str) -> str | None:
    """Map a Hydrogen instrument name to an evaluation drum kind.

    Parameters
    ----------
    name : str
        The ``<name>`` of an ``<instrument>`` in ``drumkit.xml``.

    Returns
    -------
    str or None
        One of ``DRUM_KINDS``, or None for anything else (claps, cowbells,
        pedal or half-open hats, rolls, rim clicks, hand drums...).
    """
    n = name.lower()
    toks = re.findall(r"[a-z]+", n)
    if any(t in ("roll", "choke", "stick", "rim", "click", "clap") for t in toks):
        return None
    if "hat" in toks or "hh" in toks or "hihat" in toks or "ohh" in toks or re.search(r"hi-?hat", n):
        if any(t in ("pedal", "pd", "semi", "semiopen", "swish", "side", "free") for t in toks):
            return None
        if "ohh" in toks or any(t in ("open", "opened", "op") for t in toks):
            return "hihat-open"
        if any(t in ("closed", "cl", "close") for t in toks):
            return "hihat-closed"
        return None
    if "kick" in toks or "bassdrum" in toks or re.search(r"bass ?drum", n) or "bd" in toks:
        return "kick"
    if any(t.startswith("snare") for t in toks):
        return "snare"
    if any(t == "tom" or t.startswith("tomhi") or t.startswith("tomlo") or t.startswith("tommid")
           for t in toks) or re.search(r"\btoms?\b", n):
        return "tom"
    if any(w in n for w in ("crash", "ride", "china", "splash", "cymbal")):
        return "cymbal"
    return None


def parse_drumkit(xml_text: str) -> list[dict]:
    """Instruments of a ``drumkit.xml``: name, kind, volume and layers.

    Parameters
    ----------
    xml_text : str

    Returns
    -------
    list of dict
        ``{"name", "kind", "volume", "layers": [{"filename", "min", "max",
        "gain"}]}``; instruments without a sample file are left out.
    """
    root = ET.fromstring(xml_text)
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""

    def num(el, tag, default):
        try:
            return float(el.findtext(ns + tag, default))
        except (TypeError, ValueError):
            return default

    out = []
    for inst in root.iter(ns + "instrument"):
        name = (inst.findtext(ns + "name") or "").strip()
        layers = []
        for lay in inst.iter(ns + "layer"):
            fn = (lay.findtext(ns + "filename") or "").strip()
            if fn:
                layers.append({"filename": fn, "min": num(lay, "min", 0.0),
                               "max": num(lay, "max", 1.0), "gain": num(lay, "gain", 1.0)})
        top = (inst.findtext(ns + "filename") or "").strip()  # older kits: one file
        if not layers and top:
            layers.append({"filename": top, "min": 0.0, "max": 1.0, "gain": 1.0})
        if layers:
            out.append({"name": name, "kind": drum_kind(name),
                        "volume": num(inst, "volume", 1.0), "layers": layers})
    return out


def split_kits(kits, held_out=HELD_OUT_KITS) -> tuple[list, list]:
    """Split kit names into (training, held-out), both sorted.

    Raises
    ------
    CorpusError
        When a held-out kit is not among ``kits``.
    """
    kits = sorted(set(kits))
    missing = [k for k in held_out if k not in kits]
    if missing:
        raise CorpusError(f"held-out drum kits not installed: {', '.join(missing)}: install with "
                          f"apt-get install -y {HYDROGEN_PACKAGE}")
    return [k for k in kits if k not in held_out], [k for k in kits if k in held_out]


def load_kits() -> dict:
    """Every installed Hydrogen kit: name -> list of instruments."""
    need_path(HYDROGEN_DIR, HYDROGEN_PACKAGE, "Hydrogen drum kits")
    kits = {}
    for xml in sorted(HYDROGEN_DIR.glob("*/drumkit.xml")):
        kit = xml.parent.name
        insts = parse_drumkit(xml.read_text(encoding="utf-8", errors="replace"))
        for ins in insts:
            for lay in ins["layers"]:
                lay["path"] = str(xml.parent / lay["filename"])
            ins["layers"] = [lay for lay in ins["layers"] if Path(lay["path"]).is_file()]
        kits[kit] = [ins for ins in insts if ins["layers"]]
    if not kits:
        raise CorpusError(f"no drumkit.xml under {HYDROGEN_DIR}: install with "
                          f"apt-get install -y {HYDROGEN_PACKAGE}")
    return kits


# --------------------------------------------------------------------------
# the build
# --------------------------------------------------------------------------

class Progress:
    """Prints ``stage: done/total`` at most every few seconds."""

    def __init__(self, stage: str, total: int, every_s: float = 3.0):
        self.stage, self.total, self.every_s = stage, total, every_s
        self.done = 0
        self.t0 = self.last = time.monotonic()
        print(f"[{stage}] {total} to do", flush=True)

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            print(f"[{self.stage}] {self.done}/{self.total} ({now - self.t0:.0f} s)", flush=True)

    def finish(self, note: str = "") -> None:
        print(f"[{self.stage}] done: {self.done}/{self.total} in "
              f"{time.monotonic() - self.t0:.1f} s{(' - ' + note) if note else ''}", flush=True)


class Builder:
    """Builds the parts of the corpus into ``out`` and collects manifest rows."""

    def __init__(self, out: Path, quick: bool = False, resume: bool = False, workers: int = 2,
                 phrase_scale: int = 1):
        self.out = Path(out)
        self.quick, self.resume, self.workers = quick, resume, max(1, workers)
        self.phrase_scale = max(1, int(phrase_scale))
        self.entries: dict[str, dict] = {}
        self.notes: list[str] = []
        self.sources: dict[str, dict] = {}
        self.excluded_presets: dict[str, list[int]] = {}

    # -- bookkeeping ------------------------------------------------------
    def source(self, package: str, licence: str, what: str) -> None:
        s = self.sources.setdefault(package, {
            "package": package, "copyright": f"/usr/share/doc/{package}/copyright",
            "licences": [], "used_for": []})
        if licence not in s["licences"]:
            s["licences"].append(licence)
        if what not in s["used_for"]:
            s["used_for"].append(what)

    def add(self, rel: str, part: str, label: str, package: str, source_file: str,
            licence: str, **extra) -> None:
        role, kind = part.split("-", 1)
        path = self.out / rel
        info = sf.info(str(path))
        self.entries[rel] = {
            "path": rel, "role": role, "kind": kind, "label": label, "part": part,
            "source_package": package, "source_file": source_file, "licence": licence,
            "sha256": sha256_file(path), "duration_s": round(info.frames / info.samplerate, 4),
            "channels": info.channels, **extra}

    def exists(self, rel: str) -> bool:
        return self.resume and (self.out / rel).is_file()

    def pool(self):
        return multiprocessing.get_context("fork").Pool(self.workers)

    # -- instruments ------------------------------------------------------
    def _render(self, stage: str, jobs: list) -> set:
        """Run render jobs (skipping finished ones on resume); return written paths."""
        todo = [j for j in jobs if not all(self.exists(str(Path(p).relative_to(self.out)))
                                           for _, p in j["items"])]
        written = {str(p) for j in jobs if j not in todo for _, p in j["items"]}
        prog = Progress(stage, sum(len(j["items"]) for j in jobs))
        prog.step(len(written))
        skipped = []
        if todo:
            with self.pool() as pool:
                for res in pool.imap_unordered(render_job, todo):
                    for path, ok in res:
                        (written.add if ok else skipped.append)(path)
                    prog.step(len(res))
        prog.finish(f"{len(skipped)} near-silent skipped" if skipped else "")
        for p in skipped:
            self.notes.append(f"{stage}: near-silent render skipped: {Path(p).name}")
        return written

    def _render_held_out(self, stage: str, plan: dict, phrase, job: dict) -> dict:
        """Render a held-out instrument set: up to three attempts with fresh phrases for
        any clip that came out near-silent.

        Parameters
        ----------
        stage : str
            The part, for progress and notes.
        plan : dict
            Output path (relative) -> ``(family, program, ...)``.
        phrase : callable
            ``phrase(rel, attempt)`` -> the :class:`Phrase` to render.
        job : dict
            The render job's other keys (``font``, optionally ``synth``).

        Returns
        -------
        dict
            Each written path -> the phrase it holds; the paths silent after
            three attempts are noted and left out.

        Clips under the set's folder (``<role>/instruments/*/``) that the plan
        does not name (an older build's layout, a family left out) are
        deleted, so the folder holds the set and nothing else; a quick build
        into a full corpus is refused before anything is rendered
        (:func:`check_quick`).
        """
        pending, phrases = dict(plan), {}
        for attempt in range(3):
            if not pending:
                break
            items = []
            for rel in pending:
                phrases[rel] = phrase(rel, attempt)
                items.append((phrases[rel], str(self.out / rel)))
            jobs = [{**job, "items": items[i::self.workers]} for i in range(self.workers)]
            written = self._render(stage + (f" retry {attempt}" if attempt else ""), [j for j in jobs if j["items"]])
            pending = {r: v for r, v in pending.items() if str(self.out / r) not in written}
        for rel in pending:
            self.notes.append(f"{stage}: {rel} silent after 3 attempts; left out")
        done = {rel: phrases[rel] for rel in plan if rel not in pending}
        roots = {(self.out / rel).parent.parent for rel in plan}  # <role>/instruments: every family folder
        stale = [f for root in roots for f in sorted(root.glob("*/*.flac"))
                 if f.relative_to(self.out).as_posix() not in done]
        for f in stale:
            f.unlink()
        if stale:
            print(f"{stage}: removed {len(stale)} clips the plan does not name (an older layout)", flush=True)
        return done

    def eval_instruments(self) -> None:
        """The first 8 programs of each evaluated family, :data:`HELD_OUT_PHRASES` phrases each, FluidR3.

        Phrase 0 keeps the seeds of the set's first version (one phrase per
        program), so it plays the same notes.
        """
        need_fluidsynth()
        font = need_path(EVAL_FONT["path"], EVAL_FONT["package"], "FluidR3_GM soundfont")
        families = EVAL_FAMILIES[:3] if self.quick else EVAL_FAMILIES
        per, phrases = (2, 2) if self.quick else (8, HELD_OUT_PHRASES)
        plan = {}
        for fam in families:
            f0 = GM_FAMILIES.index(fam) * 8
            for prog in range(f0, f0 + per):
                for k in range(phrases):
                    plan[f"eval/instruments/{fam}/{prog:03d}-{slug(GM_PROGRAMS[prog])}-{k}.flac"] = (fam, prog, k)

        def phrase(rel, attempt):
            _, prog, k = plan[rel]
            return make_phrase(seeded_rng("eval-instruments", prog, attempt, *((k,) if k else ())), prog)

        done = self._render_held_out("eval-instruments", plan, phrase, {"font": str(font)})
        for rel, ph in done.items():
            fam, prog, k = plan[rel]
            self.add(rel, "eval-instruments", fam, EVAL_FONT["package"],
                     EVAL_FONT["path"], EVAL_FONT["licence"], gm_program=prog,
                     gm_name=GM_PROGRAMS[prog], phrase=k, notes=len(ph.notes), bpm=ph.bpm, scale=ph.scale)
        self.source(EVAL_FONT["package"], EVAL_FONT["licence"], "eval/instruments")

    def dev_instruments(self) -> None:
        """The evaluation's families, played by the freepats patches: every program it has, 4 phrases each.

        freepats has no patch for some programs (2 of the ensemble family),
        so the families have 2-8 programs here.
        """
        need_timidity()
        cfg = need_path(DEV_PATCHES["config"], DEV_PATCHES["package"], "freepats timidity configuration")
        have = freepats_programs(cfg)
        families = EVAL_FAMILIES[:3] if self.quick else EVAL_FAMILIES
        per, phrases = (2, 2) if self.quick else (8, HELD_OUT_PHRASES)
        plan = {}
        for fam in families:
            f0 = GM_FAMILIES.index(fam) * 8
            progs = [p for p in have if f0 <= p < f0 + 8][:per]
            if not progs:
                self.notes.append(f"dev-instruments: freepats has no {fam} patch; family left out")
                continue
            for prog in progs:
                for k in range(phrases):
                    plan[f"dev/instruments/{fam}/{prog:03d}-{slug(GM_PROGRAMS[prog])}-{k}.flac"] = (fam, prog, k)

        def phrase(rel, attempt):
            _, prog, k = plan[rel]
            return make_phrase(seeded_rng("dev-instruments", prog, k, *((attempt,) if attempt else ())), prog)

        done = self._render_held_out("dev-instruments", plan, phrase, {"font": str(cfg), "synth": "timidity"})
        for rel, ph in done.items():
            fam, prog, k = plan[rel]
            self.add(rel, "dev-instruments", fam, DEV_PATCHES["package"], DEV_PATCHES["config"],
                     DEV_PATCHES["licence"], gm_program=prog, gm_name=GM_PROGRAMS[prog], phrase=k,
                     notes=len(ph.notes), bpm=ph.bpm, scale=ph.scale)
        self.source(DEV_PATCHES["package"], DEV_PATCHES["licence"], "dev/instruments")

    def train_instruments(self) -> None:
        need_fluidsynth()
        eval_font = need_path(EVAL_FONT["path"], EVAL_FONT["package"], "FluidR3_GM soundfont")
        fonts = []
        for required, font in TRAIN_FONTS:
            paths = [font["path"], *font.get("alt_paths", [])]
            found = next((p for p in paths if Path(p).is_file()), None)
            if found is None:
                if required:
                    need_path(font["path"], font["package"], f"{font['id']} soundfont")
                self.notes.append(f"train-instruments: optional soundfont {font['id']} not installed "
                                  f"(apt-get install -y {font['package']}); not used")
                continue
            if self.quick and found.endswith(".sf3"):
                continue  # keep the quick build fast: sf3 fonts decode slowly
            fonts.append({**font, "path": found})
        plan = []
        for font in fonts:
            bad = fluid_overlap_programs(font["path"], eval_font)
            self.excluded_presets[font["id"]] = bad
            progs = [p for p in range(128) if p not in bad]
            if self.quick:
                progs = [p for p in (0, 24, 40, 56, 73, 80) if p not in bad][:3]
            for prog in progs:
                for k in range(1 if self.quick else self.phrase_scale * TRAIN_PHRASES.get(font["id"], 1)):
                    fam = family_of(prog)
                    rel = (f"train/instruments/{fam}/{font['id']}-{prog:03d}-"
                           f"{slug(GM_PROGRAMS[prog])}-{k}.flac")
                    ph = make_phrase(seeded_rng("train-instruments", font["id"], prog, k), prog)
                    plan.append((font, rel, ph))
        jobs = []
        chunk = 60
        for font in fonts:
            items = [(ph, str(self.out / rel)) for f, rel, ph in plan if f is font]
            for i in range(0, len(items), chunk):
                jobs.append({"font": font["path"], "items": items[i:i + chunk]})
        # longest first: the slow sf3 jobs start at once
        jobs.sort(key=lambda j: (not j["font"].endswith(".sf3"), -len(j["items"])))
        written = self._render("train-instruments", jobs)
        for font, rel, ph in plan:
            if str(self.out / rel) in written:
                self.add(rel, "train-instruments", family_of(ph.program), font["package"],
                         font["path"], font["licence"], gm_program=ph.program,
                         gm_name=GM_PROGRAMS[ph.program], soundfont=font["id"])
        for font in fonts:
            self.source(font["package"], font["licence"], "train/instruments")

    # -- drums ------------------------------------------------------------
    def _drum_sample(self, path: str) -> np.ndarray:
        audio = read_segment(path)
        return trim_trailing(audio, max_s=MAX_DRUM_S)

    def eval_drums(self) -> None:
        kits = load_kits()
        _, held = split_kits(kits)
        cands = {k: [] for k in DRUM_KINDS}
        seen = set()
        for kit in held:
            for ins in kits[kit]:
                if ins["kind"] is None:
                    continue
                for li, lay in enumerate(ins["layers"]):
                    digest = sha256_file(lay["path"])
                    if digest in seen:
                        continue
                    seen.add(digest)
                    cands[ins["kind"]].append((kit, ins["name"], li, lay["path"]))
        per = 2 if self.quick else EVAL_DRUMS_PER_KIND
        todo = []
        for kind in DRUM_KINDS:
            # round-robin over kits in a fixed shuffled order, so each kind mixes kits
            by_kit = {}
            for c in stable_order(cands[kind], "eval-drums", kind):
                by_kit.setdefault(c[0], []).append(c)
            order = []
            while any(by_kit.values()):
                for kit in sorted(by_kit):
                    if by_kit[kit]:
                        order.append(by_kit[kit].pop(0))
            todo += [(kind, c) for c in order]
        prog = Progress("eval-drums", len(todo))
        count = {k: 0 for k in DRUM_KINDS}
        for kind, (kit, name, li, path) in todo:
            prog.step()
            if count[kind] >= per:
                continue
            rel = f"eval/drums/{kind}/{slug(kit)}-{slug(name)}-{li}.flac"
            if not self.exists(rel):
                clip = self._drum_sample(path)
                if is_silent(clip):
                    continue
                write_flac(self.out / rel, clip)
            count[kind] += 1
            self.add(rel, "eval-drums", kind, HYDROGEN_PACKAGE,
                     str(Path(path).relative_to("/")), HYDROGEN_LICENCES.get(kit, "unknown"),
                     kit=kit, instrument=name, layer=li)
            self.source(HYDROGEN_PACKAGE, HYDROGEN_LICENCES.get(kit, "unknown"), "eval/drums")
        prog.finish(", ".join(f"{k} {v}" for k, v in count.items()))
        for k, v in count.items():
            if v < per:
                self.notes.append(f"eval-drums: only {v} clips of {k}")

    def train_drums(self) -> None:
        kits = load_kits()
        train, held = split_kits(kits)
        train = [k for k in train if k in HYDROGEN_LICENCES]
        held_digests = {sha256_file(lay["path"]) for k in held for ins in kits[k]
                        for lay in ins["layers"]}
        seen = set(held_digests)
        shots = []
        for kit in train:
            for ins in kits[kit]:
                for li, lay in enumerate(ins["layers"]):
                    d = sha256_file(lay["path"])
                    if d in seen:
                        continue
                    seen.add(d)
                    shots.append((kit, ins, li, lay))
        if self.quick:
            shots = stable_order(shots, "quick-drums")[:4]
        grooves = []
        groove_kits = [k for k in train if {"kick", "snare", "hihat-closed"} <=
                       {i["kind"] for i in kits[k]}]
        n_grooves = 2 if self.quick else 24
        for kit in (groove_kits[:1] if self.quick else groove_kits):
            for g in range(n_grooves):
                grooves.append((kit, g))
        prog = Progress("train-drums", len(shots) + len(grooves))
        for kit, ins, li, lay in shots:
            prog.step()
            label = ins["kind"] or "percussion"
            rel = f"train/drums/{label}/{slug(kit)}-{slug(ins['name'])}-{li}.flac"
            if not self.exists(rel):
                clip = self._drum_sample(lay["path"])
                if is_silent(clip):
                    continue
                write_flac(self.out / rel, pad_to_min(clip))
            self.add(rel, "train-drums", label, HYDROGEN_PACKAGE,
                     str(Path(lay["path"]).relative_to("/")), HYDROGEN_LICENCES[kit],
                     kit=kit, instrument=ins["name"])
            self.source(HYDROGEN_PACKAGE, HYDROGEN_LICENCES[kit], "train/drums")
        cache: dict[str, np.ndarray] = {}
        for kit, g in grooves:
            prog.step()
            rel = f"train/drums/groove/{slug(kit)}-groove-{g:02d}.flac"
            if not self.exists(rel):
                clip = make_groove(seeded_rng("groove", kit, g), kits[kit], cache, held_digests)
                if clip is None or is_silent(clip):
                    continue
                write_flac(self.out / rel, clip)
            self.add(rel, "train-drums", "groove", HYDROGEN_PACKAGE,
                     str((HYDROGEN_DIR / kit / "drumkit.xml").relative_to("/")),
                     HYDROGEN_LICENCES[kit], kit=kit)
        prog.finish()

    # -- music ------------------------------------------------------------
    def music_tracks(self) -> list[dict]:
        tracks = []
        for sid, src in MUSIC_SOURCES.items():
            base = need_path(src["dir"], src["package"], f"{sid} music")
            for p in sorted(base.rglob(src["pattern"])):
                key = f"{sid}/{p.relative_to(base).as_posix()}"
                lic = src["licence"]
                if sid == "warzone" and "aftermath_soundtrack" in key and "track3_enhanced" not in key:
                    lic = WARZONE_AFTERMATH_LICENCE
                tracks.append({"key": key, "source": sid, "package": src["package"],
                               "path": str(p), "licence": lic,
                               "duration": sf.info(str(p)).duration})
        return tracks

    def music_split(self, tracks) -> tuple[list, list]:
        return split_tracks(tracks, EVAL_TRACKS_PER_SOURCE)

    def eval_music(self) -> None:
        tracks = self.music_tracks()
        _, held = self.music_split(tracks)
        if self.quick:
            held = held[:2]
        jobs = [(t, str(self.out), self.resume) for t in held]
        prog = Progress("eval-music", len(jobs))
        with self.pool() as pool:
            for t, rows in zip(held, pool.imap(eval_music_job, jobs)):
                prog.step()
                if len(rows) < EVAL_SEGMENTS:
                    self.notes.append(f"eval-music: {t['key']} gave {len(rows)} segments")
                for rel, start in rows:
                    self.add(rel, "eval-music", track_label(t["key"]), t["package"],
                             t["path"].lstrip("/"), t["licence"], start_s=start)
                self.source(t["package"], t["licence"], "eval/music")
        prog.finish()

    def train_music(self) -> None:
        tracks = self.music_tracks()
        train, _ = self.music_split(tracks)
        if self.quick:
            train = train[:2]
        budgets = water_fill([t["duration"] * 0.5 for t in train],
                             60.0 if self.quick else TRAIN_MUSIC_S)
        jobs = [(t, b, str(self.out), self.resume, self.quick) for t, b in zip(train, budgets)]
        prog = Progress("train-music", len(jobs))
        with self.pool() as pool:
            for t, rows in zip(train, pool.imap(train_music_job, jobs)):
                prog.step()
                for rel, start in rows:
                    self.add(rel, "train-music", track_label(t["key"]), t["package"],
                             t["path"].lstrip("/"), t["licence"], start_s=start)
                self.source(t["package"], t["licence"], "train/music")
        prog.finish()

    # -- everyday sounds --------------------------------------------------
    def sound_items(self) -> list[tuple]:
        """``(label, package, source_file, licence, loader)`` for every sound."""
        items = []
        base = need_path(SONIC_PI["dir"], SONIC_PI["package"], "Sonic Pi samples")
        stanzas = dep5_stanzas(need_path(f"/usr/share/doc/{SONIC_PI['package']}/copyright",
                                         SONIC_PI["package"], "Sonic Pi copyright file"))
        for p in sorted(base.glob("*.flac")):
            lic = licence_by_basename(stanzas, p.name)
            if lic is None:
                self.notes.append(f"train-sounds: {p.name} has no licence stanza; left out")
                continue
            items.append((f"sonic-pi-{p.stem.split('_')[0]}", SONIC_PI["package"], str(p), lic,
                          str(p)))
        cat = need_path(OPENSFX["path"], OPENSFX["package"], "OpenSFX sound set")
        for i, (desc, wav) in enumerate(read_opensfx(cat)):
            lic = opensfx_licence(desc)
            if lic is None:
                self.notes.append(f"train-sounds: OpenSFX #{i} ({desc[:40]}) licence unclear; left out")
                continue
            title = re.match(r'\s*"([^"]+)"', desc)
            items.append(("openttd", OPENSFX["package"],
                          f"{OPENSFX['path']}#{i}:{slug(title.group(1) if title else str(i))}",
                          lic, wav))
        ex = EXTRA_SOUNDS["freedesktop"]
        if Path(ex["dir"]).is_dir():
            st = dep5_stanzas(f"/usr/share/doc/{ex['package']}/copyright")
            for p in sorted(Path(ex["dir"]).glob("*.oga")):
                lic = licence_by_basename(st, p.name, star=False)
                if lic and not p.name.startswith("audio-channel"):  # spoken test tones
                    items.append(("freedesktop", ex["package"], str(p), lic, str(p)))
        else:
            self.notes.append(f"train-sounds: optional {ex['package']} not installed; not used")
        ex = EXTRA_SOUNDS["wesnoth-sfx"]
        if Path(ex["dir"]).is_dir():
            for p in sorted(Path(ex["dir"]).rglob("*")):
                if p.suffix.lower() in (".ogg", ".wav") and "/sounds/" in p.as_posix() \
                        and "/music/" not in p.as_posix():
                    sub = p.parent.name if p.parent.name != "sounds" else "sfx"
                    items.append((f"wesnoth-{slug(sub)}", ex["package"], str(p), ex["licence"],
                                  str(p)))
        else:
            self.notes.append(f"train-sounds: optional {ex['package']} not installed; not used")
        ex = EXTRA_SOUNDS["warzone-sfx"]
        if Path(ex["path"]).is_file():
            with zipfile.ZipFile(ex["path"]) as z:
                for name in sorted(n for n in z.namelist() if n.endswith(".ogg")):
                    parts = name.split("/")
                    sub = parts[1] if len(parts) > 2 else "sfx"
                    items.append((f"warzone-{slug(sub)}", ex["package"], f"{ex['path']}#{name}",
                                  ex["licence"], ("zip", ex["path"], name)))
        else:
            self.notes.append(f"train-sounds: optional {ex['package']} not installed; not used")
        return items

    def train_sounds(self) -> None:
        items = self.sound_items()
        if self.quick:
            items = stable_order(items, "quick-sounds")[:4]
        prog = Progress("train-sounds", len(items))
        used = set()
        for label, package, source_file, lic, loader in items:
            prog.step()
            stem = slug(Path(source_file.split("#")[-1]).stem.split(":")[-1])
            base = f"train/sounds/{label}/{stem}"
            n = 0
            while base + (f"-{n}" if n else "") in used:
                n += 1
            base += f"-{n}" if n else ""
            used.add(base)
            rels = [f"{base}.flac"]
            if self.exists(rels[0]):
                name = Path(base).name
                rels += sorted(str(p.relative_to(self.out))
                               for p in (self.out / base).parent.glob(name + "-part*.flac"))
            else:
                audio = trim_trailing(load_sound(loader))
                if is_silent(audio):
                    continue
                n = int(MAX_CLIP_S * SR)
                pieces = [audio[i:i + n] for i in range(0, len(audio), n)][:4]
                pieces = pieces[:1] + [p for p in pieces[1:] if len(p) >= SR * MIN_CLIP_S]
                rels = [f"{base}.flac"] + [f"{base}-part{k}.flac" for k in range(1, len(pieces))]
                for rel, piece in zip(rels, pieces):
                    if not is_silent(piece):
                        write_flac(self.out / rel, pad_to_min(fade_out(piece, 0.01)
                                                              if len(piece) == n else piece))
            for rel in rels:
                if (self.out / rel).is_file():
                    self.add(rel, "train-sounds", label, package, source_file.lstrip("/"), lic)
            self.source(package, lic, "train/sounds")
        prog.finish()

    # -- manifest ---------------------------------------------------------
    def write_manifest(self, parts) -> dict:
        old = {}
        mpath = self.out / "manifest.json"
        phrase_scale = self.phrase_scale
        if mpath.is_file():
            try:
                prev = json.loads(mpath.read_text())
                if "train-instruments" not in parts:
                    phrase_scale = int(prev.get("phrase_scale", 1))
                old = {e["path"]: e for e in prev.get("files", [])
                       if e.get("part") not in parts and (self.out / e["path"]).is_file()}
                for pkg, s in prev.get("sources", {}).items():
                    if any(e["source_package"] == pkg for e in old.values()):
                        self.sources.setdefault(pkg, s)
                if "train-instruments" not in parts:
                    for k, v in prev.get("excluded_training_presets", {}).items():
                        self.excluded_presets.setdefault(k, v)
                kept = [n for n in prev.get("notes", []) if n.split(":", 1)[0] in PARTS
                        and n.split(":", 1)[0] not in parts]
                self.notes = kept + self.notes
            except (json.JSONDecodeError, KeyError, TypeError):
                old = {}
        entries = {**old, **self.entries}
        rows = [entries[k] for k in sorted(entries)]
        manifest = build_manifest(rows, self.sources, self.excluded_presets, self.notes,
                                  quick=self.quick, phrase_scale=phrase_scale)
        tmp = mpath.with_name("manifest.json.part")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
        os.replace(tmp, mpath)
        lines = [f"{e['path']} {e['sha256']}" for e in rows if e["role"] == "train"]
        (self.out / "train_files.txt").write_text("".join(line + "\n" for line in lines))
        return manifest


def build_manifest(rows, sources, excluded, notes, quick=False, phrase_scale=1) -> dict:
    """The manifest dict: files, per-source licences, hours and split checks.

    Parameters
    ----------
    rows : list of dict
        One per written file (see :meth:`Builder.add`).
    sources : dict
        Package -> ``{"package", "copyright", "licences", "used_for"}``.
    excluded : dict
        Training soundfont id -> GM programs left out for sharing FluidR3 samples.
    notes : list of str
    quick : bool

    Raises
    ------
    CorpusError
        When a training file equals an evaluation file, or a held-out source
        file is also used for training.
    """
    hours = {}
    counts = {}
    for e in rows:
        key = f"{e['role']}/{e['kind']}"
        hours[key] = hours.get(key, 0.0) + e["duration_s"] / 3600
        counts.setdefault(key, {}).setdefault(e["label"], 0)
        counts[key][e["label"]] += 1
    train = [e for e in rows if e["role"] == "train"]
    # the development set is held out of training just as the evaluation sets are
    evals = [e for e in rows if e["role"] in ("eval", "dev")]
    sha_overlap = sorted({e["sha256"] for e in train} & {e["sha256"] for e in evals})
    # eval instruments come from the eval soundfont, which training never reads
    src_overlap = sorted({(e["source_package"], e["source_file"]) for e in train}
                         & {(e["source_package"], e["source_file"]) for e in evals})
    if sha_overlap or src_overlap:
        raise CorpusError(f"training and held-out (evaluation, development) sets overlap: {len(sha_overlap)} identical files, "
                          f"{len(src_overlap)} shared source files (first: "
                          f"{(sha_overlap + [str(s) for s in src_overlap])[:3]})")
    per_source = {}
    for e in rows:
        s = per_source.setdefault(e["source_package"], {"files": 0, "hours": 0.0, "licences": {}})
        s["files"] += 1
        s["hours"] += e["duration_s"] / 3600
        s["licences"][e["licence"]] = s["licences"].get(e["licence"], 0) + 1
    for pkg, s in per_source.items():
        s["hours"] = round(s["hours"], 4)
        s["copyright"] = sources.get(pkg, {}).get("copyright", f"/usr/share/doc/{pkg}/copyright")
        s["used_for"] = sources.get(pkg, {}).get("used_for", [])
    return {
        "format": 1,
        "sample_rate": SR,
        "quick": quick,
        "phrase_scale": phrase_scale,
        "total_hours": {k: round(v, 4) for k, v in sorted(hours.items())},
        "train_hours": round(sum(v for k, v in hours.items() if k.startswith("train/")), 4),
        "counts_per_label": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())},
        "sources": dict(sorted(per_source.items())),
        "held_out": {"soundfont": EVAL_FONT["path"], "drum_kits": list(HELD_OUT_KITS),
                     "dev_patches": DEV_PATCHES["config"]},
        "excluded_training_presets": excluded,
        "checks": {"train_eval_identical_files": 0, "train_eval_shared_sources": 0},
        "notes": notes,
        "files": rows,
    }


# -- worker functions (module level so a process pool can run them) --------

def track_label(key: str) -> str:
    """Folder name of a music track: source and file stem."""
    src, rest = key.split("/", 1)
    return slug(f"{src}-{Path(rest).stem}")


def split_tracks(tracks, per_source: int) -> tuple[list, list]:
    """Hold out ``per_source`` whole tracks of each music source.

    Only tracks of at least ``MIN_EVAL_TRACK_S`` that belong to no group of
    related tracks are eligible; the choice is a fixed hash order of the track
    keys, so it does not depend on which other tracks are installed.

    Parameters
    ----------
    tracks : list of dict
        Each with ``key`` (``"<source>/<path>"``), ``source`` and ``duration``.
    per_source : int

    Returns
    -------
    (train, held_out) : lists of the same dicts
    """
    grouped = {k for g in MUSIC_GROUPS for k in g}
    held = []
    for sid in sorted({t["source"] for t in tracks}):
        eligible = [t for t in tracks if t["source"] == sid and t["key"] not in grouped
                    and t["duration"] >= MIN_EVAL_TRACK_S]
        held += stable_order(eligible, "held-out-track")[:per_source]
    held_keys = {t["key"] for t in held}
    held.sort(key=lambda t: t["key"])
    return [t for t in tracks if t["key"] not in held_keys], held


def water_fill(caps, total: float) -> list[float]:
    """Share ``total`` as evenly as possible with each share at most its cap.

    Parameters
    ----------
    caps : sequence of float
    total : float

    Returns
    -------
    list of float
        Shares summing to ``min(total, sum(caps))``.
    """
    caps = [max(0.0, float(c)) for c in caps]
    share = [0.0] * len(caps)
    open_, left = set(range(len(caps))), float(total)
    while open_ and left > 1e-9:
        each = left / len(open_)
        full = [i for i in sorted(open_) if caps[i] - share[i] <= each]
        if not full:
            for i in open_:
                share[i] += each
            break
        for i in full:
            left -= caps[i] - share[i]
            share[i] = caps[i]
            open_.discard(i)
    return share


def eval_music_job(args) -> list:
    """Five non-overlapping 6 s segments of one held-out track."""
    track, out, resume = args
    label = track_label(track["key"])
    rng = seeded_rng("eval-music", track["key"])
    d = track["duration"]
    lo, hi = 0.1 * d, 0.9 * d
    win = (hi - lo) / EVAL_SEGMENTS
    rows = []
    for s in range(EVAL_SEGMENTS):
        rel = f"eval/music/{label}/seg{s}.flac"
        for attempt in range(6):
            start = round(lo + s * win + float(rng.uniform(0, max(0.0, win - EVAL_SEGMENT_S))), 3)
            if resume and (Path(out) / rel).is_file():
                break
            clip = read_segment(track["path"], start, EVAL_SEGMENT_S)
            if len(clip) >= int(EVAL_SEGMENT_S * SR) - 1 and not is_silent(clip):
                write_flac(Path(out) / rel, clip[: int(EVAL_SEGMENT_S * SR)])
                break
        else:
            continue
        rows.append((rel, start))
    return rows


def train_music_job(args) -> list:
    """Clips of 10-30 s spread over one training track, about ``budget`` s in all."""
    track, budget, out, resume, quick = args
    label = track_label(track["key"])
    rng = seeded_rng("train-music", track["key"])
    d = track["duration"]
    rows = []
    if d < MIN_CLIP_S:
        return rows
    if d <= 30.0:
        plan = [(0.0, d)]
    else:
        n = max(1, int(round(budget / 20.0)))
        win = d / n
        plan = []
        for k in range(n):
            length = float(np.clip(budget / n * rng.uniform(0.6, 1.4), 10.0, 30.0))
            length = min(length, win)
            start = k * win + float(rng.uniform(0.0, max(0.0, win - length)))
            plan.append((round(start, 3), round(length, 3)))
    if quick:
        plan = plan[:2]
    for k, (start, length) in enumerate(plan):
        rel = f"train/music/{label}/clip{k:02d}.flac"
        if not (resume and (Path(out) / rel).is_file()):
            clip = read_segment(track["path"], start, length)
            if len(clip) < SR * MIN_CLIP_S or is_silent(clip):
                continue
            write_flac(Path(out) / rel, fade_out(clip[: int(MAX_CLIP_S * SR)], 0.01))
        rows.append((rel, start))
    return rows


def make_groove(rng, instruments, cache, banned) -> np.ndarray | None:
    """A short drum pattern mixed from one training kit's samples.

    Parameters
    ----------
    rng : numpy.random.Generator
    instruments : list of dict
        The kit, as from :func:`parse_drumkit` (with layer ``path``).
    cache : dict
        Decoded samples by path, shared between calls.
    banned : set of str
        sha256 of samples that must not be used (held-out kits).

    Returns
    -------
    ndarray or None
        Stereo float32, 4-9 s; None if the kit lacks a kick, snare or closed hat.
    """
    by_kind = {}
    for ins in instruments:
        if ins["kind"]:
            by_kind.setdefault(ins["kind"], []).append(ins)
    if not {"kick", "snare", "hihat-closed"} <= set(by_kind):
        return None
    bpm = float(rng.uniform(80, 150))
    step = 60.0 / bpm / 4
    bars = max(1, int(math.ceil(4.0 / (16 * step))))
    while bars * 16 * step > 8.0 and bars > 1:
        bars -= 1
    length = bars * 16 * step + 1.0
    mix = np.zeros((int(length * SR) + SR, 2), np.float32)
    pick = {k: v[int(rng.integers(len(v)))] for k, v in by_kind.items()}

    def hit(kind, at_step, vel):
        ins = pick.get(kind)
        if ins is None:
            return
        layers = [lay for lay in ins["layers"] if lay["min"] <= vel <= lay["max"]] or ins["layers"]
        lay = layers[int(rng.integers(len(layers)))]
        if lay["path"] not in cache:
            d = sha256_file(lay["path"])
            cache[lay["path"]] = None if d in banned else trim_trailing(read_segment(lay["path"]),
                                                                          max_s=MAX_DRUM_S)
        s = cache[lay["path"]]
        if s is None:
            return
        a = int(at_step * step * SR)
        gain = 0.5 * vel * min(2.0, lay["gain"]) * ins["volume"]
        n = min(len(s), len(mix) - a)
        mix[a:a + n] += gain * s[:n]

    hat_every = 1 if rng.random() < 0.4 else 2
    for b in range(bars):
        o = b * 16
        for s in range(16):
            if s in (0, 8) or rng.random() < 0.12:
                hit("kick", o + s, float(rng.uniform(0.7, 1.0)))
            if s in (4, 12):
                hit("snare", o + s, float(rng.uniform(0.7, 1.0)))
            elif rng.random() < 0.06:
                hit("snare", o + s, float(rng.uniform(0.2, 0.45)))
            if s % hat_every == 0:
                if s == 14 and "hihat-open" in pick and rng.random() < 0.5:
                    hit("hihat-open", o + s, float(rng.uniform(0.5, 0.9)))
                else:
                    hit("hihat-closed", o + s, float(rng.uniform(0.35, 0.85)))
        if b == bars - 1 and "tom" in pick and rng.random() < 0.4:
            for s in (12, 13, 14, 15):
                hit("tom", o + s, float(rng.uniform(0.6, 1.0)))
    if "cymbal" in pick and rng.random() < 0.5:
        hit("cymbal", 0, float(rng.uniform(0.6, 1.0)))
    mix = mix[: int(length * SR)]
    peak = float(np.max(np.abs(mix)))
    if peak > 0.99:  # keep clear of clipping; the level is otherwise left as mixed
        mix *= 0.99 / peak
    return fade_out(mix, 0.05)


def read_opensfx(path) -> list[tuple[str, bytes]]:
    """The ``(description, WAV bytes)`` entries of an OpenTTD ``.cat`` sound set."""
    data = Path(path).read_bytes()
    first = struct.unpack("<I", data[:4])[0] & 0x7FFFFFFF
    out = []
    for i in range(first // 8):
        off, size = struct.unpack("<II", data[i * 8:i * 8 + 8])
        off &= 0x7FFFFFFF
        n = data[off]
        desc = data[off + 1:off + 1 + n].split(b"\0")[0].decode("utf-8", errors="replace")
        wav = data[off + 1 + n:off + size]
        if wav[:4] == b"RIFF":
            out.append((desc, wav))
    return out


def opensfx_licence(desc: str) -> str | None:
    """Short licence id from an OpenSFX description, or None if unclear."""
    d = desc.lower()
    if "license:" in d:
        d = d.rsplit("license:", 1)[1]
    if "zero" in d or "cc0" in d or "public domain" in d:
        return "CC0-1.0"
    if "attribution-sharealike" in d or "attribution share" in d or "by-sa" in d:
        m = re.search(r"(\d\.\d)", d)
        return f"CC-BY-SA-{m.group(1) if m else '3.0'}"
    if "attribution" in d:
        m = re.search(r"(\d\.\d)", d)
        return f"CC-BY-{m.group(1) if m else '3.0'}"
    if "gpl" in d:
        return "GPL-2+"
    return None


def load_sound(loader) -> np.ndarray:
    if isinstance(loader, tuple) and loader[0] == "zip":
        with zipfile.ZipFile(loader[1]) as z:
            return read_segment(z.read(loader[2]))
    return read_segment(loader)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def check_sources(parts) -> None:
    """Fail early, naming the package, when a needed source is missing."""
    if {"eval-instruments", "train-instruments"} & set(parts):
        need_fluidsynth()
        need_path(EVAL_FONT["path"], EVAL_FONT["package"], "FluidR3_GM soundfont")
    if "dev-instruments" in parts:
        need_timidity()
        need_path(DEV_PATCHES["config"], DEV_PATCHES["package"], "freepats timidity configuration")
    if "train-instruments" in parts:
        for required, font in TRAIN_FONTS:
            if required and not any(Path(p).is_file() for p in [font["path"], *font.get("alt_paths", [])]):
                need_path(font["path"], font["package"], f"{font['id']} soundfont")
    if any(p.endswith("drums") for p in parts):
        need_path(HYDROGEN_DIR, HYDROGEN_PACKAGE, "Hydrogen drum kits")
    if any(p.endswith("music") for p in parts):
        for sid, src in MUSIC_SOURCES.items():
            need_path(src["dir"], src["package"], f"{sid} music")
    if "train-sounds" in parts:
        need_path(SONIC_PI["dir"], SONIC_PI["package"], "Sonic Pi samples")
        need_path(OPENSFX["path"], OPENSFX["package"], "OpenSFX sound set")


def check_phrase_scale(out: Path, parts, scale: int) -> None:
    """Refuse to rebuild the training instruments of ``out`` at another ``--phrase-scale``.

    A smaller scale would leave the larger build's extra phrases on disk,
    unlisted, and training imports the folder.
    """
    mpath = out / "manifest.json"
    if "train-instruments" not in parts or not mpath.is_file():
        return
    try:
        before = int(json.loads(mpath.read_text()).get("phrase_scale", 1))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
        return
    if before != scale:
        raise CorpusError(f"{out} was built with --phrase-scale {before}: build its training instruments "
                          f"again with --phrase-scale {before}, or build into an empty folder")


def check_quick(out: Path, quick: bool) -> None:
    """Refuse a ``--quick`` build into a folder that holds a full corpus.

    The quick build's held-out sets are a few clips of 3 families; writing
    them over a full corpus would delete the full sets' other clips.
    """
    mpath = out / "manifest.json"
    if not quick or not mpath.is_file():
        return
    try:
        full = json.loads(mpath.read_text()).get("quick") is False
    except (json.JSONDecodeError, AttributeError):
        return
    if full:
        raise CorpusError(f"{out} holds a full corpus: a --quick build would replace its sets; "
                          "build the quick corpus into an empty folder")


def parse_parts(text: str) -> list[str]:
    """Expand ``all``, ``eval``, ``train`` and part names into a part list."""
    out = []
    for tok in (t.strip() for t in text.split(",") if t.strip()):
        if tok == "all":
            out += PARTS
        elif tok in ("eval", "dev", "train"):
            out += [p for p in PARTS if p.startswith(tok + "-")]
        elif tok in PARTS:
            out.append(tok)
        else:
            raise CorpusError(f"unknown part {tok!r}: choose from all, eval, dev, train, {', '.join(PARTS)}")
    return [p for p in PARTS if p in out]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="corpus", help="output folder (default: corpus)")
    ap.add_argument("--quick", action="store_true", help="tiny build: a few clips per kind")
    ap.add_argument("--resume", action="store_true", help="keep files that are already written")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    ap.add_argument("--phrase-scale", type=int, default=1, metavar="N",
                    help="N times the default phrases per training soundfont program (default: 1); "
                         "the first phrases stay the same, so a larger build contains the smaller one")
    ap.add_argument("--parts", default="all",
                    help="comma list: all, eval, dev, train, or " + ", ".join(PARTS))
    args = ap.parse_args(argv)
    try:
        parts = parse_parts(args.parts)
        check_sources(parts)
        if args.phrase_scale < 1:
            raise CorpusError(f"--phrase-scale must be at least 1, got {args.phrase_scale}")
        check_phrase_scale(Path(args.out), parts, args.phrase_scale)
        check_quick(Path(args.out), args.quick)
        b = Builder(Path(args.out), quick=args.quick, resume=args.resume, workers=args.workers,
                    phrase_scale=args.phrase_scale)
        t0 = time.monotonic()
        for part in parts:
            getattr(b, part.replace("-", "_"))()
        m = b.write_manifest(parts)
    except CorpusError as e:
        print(f"build_corpus: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(m['files'])} files to {args.out} in {time.monotonic() - t0:.0f} s")
    for k, v in m["total_hours"].items():
        print(f"  {k}: {v:.3f} h, {sum(m['counts_per_label'][k].values())} files")
    for n in m["notes"]:
        print(f"  note: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
