#!/usr/bin/env python3
"""Generate perceptlab's bundled demo audio library.

Every clip is made from scratch: this script composes a short musical phrase,
writes it as a Standard MIDI File with its own tiny SMF writer (no mido),
renders it with the ``fluidsynth`` command line and the FluidR3_GM soundfont,
then trims silence, downmixes to mono, normalises, fades and encodes FLAC.

    python assets/make_demo.py [--out assets/demo] [--seed 20240601]
                               [--soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2]
                               [--classes piano,strings,...] [--format flac|ogg]
                               [--keep-midi DIR] [--check]

Layout written: ``<out>/<label>/<label>_NN.flac`` (NN = 01..08).  Everything is
driven by a fixed seed, so the same seed, soundfont and fluidsynth version give
the same MIDI and (in practice) the same audio.

Needs: Python standard library, numpy, soundfile, and the ``fluidsynth``
executable (Debian: ``apt install fluidsynth fluid-soundfont-gm``).
"""
from __future__ import annotations

import argparse
import math
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
DEFAULT_SEED = 20240601
SR = 22050                 # render and output sample rate
CLIPS_PER_CLASS = 8
MIN_S, MAX_S = 3.0, 6.0    # hard limits on final clip duration
TPQ = 480                  # MIDI ticks per quarter note
DRUM_CH = 9                # MIDI channel 10

# --------------------------------------------------------------------------
# Minimal Standard MIDI File writer
# --------------------------------------------------------------------------


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity."""
    if value < 0:
        raise ValueError("negative delta time")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


class Song:
    """A single-track (format 0) MIDI song built from beat-based events."""

    def __init__(self, bpm: float, rng: random.Random, swing_ms: float = 6.0):
        self.bpm = float(bpm)
        self.rng = rng
        self.swing_ms = swing_ms          # std-dev of human timing jitter
        self.events: list[tuple[int, int, bytes]] = []   # (tick, order, data)
        self.last_tick = 0
        tempo_us = int(round(60_000_000 / self.bpm))
        self._meta(0, 0x51, struct.pack(">I", tempo_us)[1:])
        self._meta(0, 0x58, bytes([4, 2, 24, 8]))        # 4/4

    # -- helpers ---------------------------------------------------------
    def tick(self, beat: float, jitter: bool = False) -> int:
        t = beat * TPQ
        if jitter and self.swing_ms > 0:
            t += self.rng.gauss(0.0, self.swing_ms) * TPQ * self.bpm / 60000.0
        return max(0, int(round(t)))

    def seconds(self, beats: float) -> float:
        return beats * 60.0 / self.bpm

    def beats(self, seconds: float) -> float:
        return seconds * self.bpm / 60.0

    def _add(self, tick: int, order: int, data: bytes) -> None:
        self.events.append((tick, order, data))
        self.last_tick = max(self.last_tick, tick)

    def _meta(self, tick: int, kind: int, payload: bytes) -> None:
        self._add(tick, 0, bytes([0xFF, kind]) + _vlq(len(payload)) + payload)

    # -- channel messages -----------------------------------------------
    def program(self, ch: int, prog: int, beat: float = 0.0) -> None:
        # No bank select: fluidsynth maps channel 10 to the drum bank (128)
        # itself, and the melodic programs all live in bank 0.
        self._add(self.tick(beat), 1, bytes([0xC0 | ch, prog & 0x7F]))

    def cc(self, ch: int, ctl: int, val: int, beat: float = 0.0) -> None:
        self._add(self.tick(beat), 2, bytes([0xB0 | ch, ctl, _clamp7(val)]))

    def note(self, ch: int, pitch: int, vel: int, beat: float, dur: float,
             jitter: bool = True) -> None:
        pitch = int(pitch)
        if not 0 <= pitch <= 127:
            return
        if jitter:
            vel += self.rng.gauss(0.0, 3.0)
        on = self.tick(beat, jitter)
        off = max(on + 10, self.tick(beat + dur, jitter))
        self._add(on, 4, bytes([0x90 | ch, pitch, _clamp7(vel, lo=1)]))
        self._add(off, 3, bytes([0x80 | ch, pitch, 64]))

    def chord(self, ch: int, pitches, vel: int, beat: float, dur: float,
              spread: float = 0.0) -> None:
        """Play pitches together; ``spread`` (beats) staggers them like a strum."""
        for i, p in enumerate(dict.fromkeys(pitches)):      # drop doubled pitches
            self.note(ch, p, vel + self.rng.randint(-6, 6), beat + i * spread,
                      dur - i * spread)

    def setup(self, ch: int, prog: int, volume: int = 100, pan: int = 64,
              reverb: int = 40, chorus: int = 0) -> None:
        self.program(ch, prog, 0.0)
        self.cc(ch, 7, volume)
        self.cc(ch, 10, pan)
        self.cc(ch, 91, reverb)
        self.cc(ch, 93, chorus)
        self.cc(ch, 11, 127)

    # -- serialise ---------------------------------------------------------
    def to_bytes(self, tail_seconds: float = 2.0) -> bytes:
        # End of track a little after the last event so fluidsynth's fast
        # render keeps the release and reverb tail (trimmed again later).
        end = self.last_tick + self.tick(self.beats(tail_seconds))
        events = sorted(self.events, key=lambda e: (e[0], e[1]))
        body = bytearray()
        now = 0
        for tick, _, data in events:
            body += _vlq(tick - now) + data
            now = tick
        body += _vlq(end - now) + b"\xFF\x2F\x00"
        header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPQ)
        return header + b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def _clamp7(v: float, lo: int = 0) -> int:
    return int(min(127, max(lo, round(v))))


# --------------------------------------------------------------------------
# A little music theory
# --------------------------------------------------------------------------

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
DORIAN = (0, 2, 3, 5, 7, 9, 10)
MIXOLYDIAN = (0, 2, 4, 5, 7, 9, 10)

PROGS_MAJOR = ([0, 4, 5, 3], [0, 3, 4, 0], [1, 4, 0, 0], [0, 5, 3, 4],
               [0, 5, 1, 4], [3, 4, 2, 5], [0, 2, 3, 4])
PROGS_MINOR = ([0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 4], [0, 3, 6, 2],
               [0, 5, 3, 4], [0, 2, 5, 4])


class Key:
    def __init__(self, tonic: int, scale):
        self.tonic = tonic        # MIDI note of the tonic in some octave
        self.scale = scale

    def pitch(self, degree: int, octave: int = 0) -> int:
        o, d = divmod(degree, 7)
        return self.tonic + self.scale[d] + 12 * (o + octave)

    def chord(self, degree: int, octave: int = 0, size: int = 3) -> list[int]:
        pitches = [self.pitch(degree + 2 * i, octave) for i in range(size)]
        if self.scale is MINOR and degree % 7 == 4:      # major V in minor
            pitches[1] += 1
        return pitches


def random_key(rng: random.Random, lo: int, hi: int, minor_p: float = 0.4):
    tonic = rng.randint(lo, hi)
    scale = MINOR if rng.random() < minor_p else MAJOR
    progs = PROGS_MINOR if scale is MINOR else PROGS_MAJOR
    return Key(tonic, scale), list(rng.choice(progs))


def voice_near(pitches, centre: int) -> list[int]:
    """Move each chord tone by octaves so the chord sits around ``centre``."""
    out = []
    for p in pitches:
        while p < centre - 6:
            p += 12
        while p > centre + 6:
            p -= 12
        out.append(p)
    return sorted(out)


def melody_line(rng: random.Random, key: Key, prog, beats_per_chord: float,
                total_beats: float, octave: int, rhythm_sets,
                leap_p: float = 0.2, lo: int = -3, hi: int = 10):
    """Random-walk melody on scale degrees that leans on chord tones on beats.

    The walk keeps a direction (flipping now and then, and at the range
    limits ``lo``..``hi`` in scale degrees) so lines have a contour rather
    than dithering around one note.  Returns a list of (beat, dur, pitch)."""
    notes = []
    degree = rng.choice([0, 2, 4])
    direction = rng.choice([-1, 1])
    beat = 0.0
    while beat < total_beats - 1e-6:
        rhythm = rng.choice(rhythm_sets)
        for dur in rhythm:
            if beat >= total_beats - 1e-6:
                break
            chord_deg = prog[int(beat // beats_per_chord) % len(prog)]
            dur = min(dur, total_beats - beat)
            if rng.random() < 0.25:
                direction = -direction
            on_beat = abs(beat - round(beat)) < 1e-6
            if notes and on_beat and rng.random() < 0.6:
                tones = [t for t in range(lo, hi + 1) if (t - chord_deg) % 7 in (0, 2, 4)]
                ahead = [t for t in tones if 0 < (t - degree) * direction <= 4]
                degree = rng.choice(ahead) if ahead else degree - direction * 2
            elif notes:
                size = rng.choice([3, 4]) if rng.random() < leap_p else rng.choice([1, 1, 2])
                degree += direction * size
            if degree > hi or degree < lo:
                direction = -direction
                degree = max(lo, min(hi, degree))
            notes.append((beat, dur, key.pitch(degree, octave)))
            beat += dur
    return notes


def ending_beats(song: Song, target_s: float, beats_per_bar: int = 4,
                 min_bars: int = 1) -> float:
    """Total beats of music for a clip aiming at ``target_s`` seconds."""
    b = song.beats(target_s - 0.35)
    return max(min_bars * beats_per_bar * 0.5, b)


# --------------------------------------------------------------------------
# Class generators.  Each takes (rng, idx, target_seconds) and returns a Song.
# ``idx`` (0..7) cycles through styles so each class covers its range.
# --------------------------------------------------------------------------


def gen_piano(rng, idx, target):
    style = ("melody", "arpeggio", "block", "alberti", "melody", "ballad",
             "arpeggio", "ragtime")[idx % 8]
    bpm = rng.uniform(68, 96) if style in ("ballad", "block") else rng.uniform(84, 132)
    s = Song(bpm, rng, swing_ms=7)
    s.setup(0, rng.choice([0, 0, 0, 1]), volume=110, reverb=rng.randint(30, 70))
    key, prog = random_key(rng, 55, 66)
    total = ending_beats(s, target)
    bpc = 2.0 if total < 10 else 4.0
    nchords = max(2, int(math.ceil(total / bpc)))
    rh_oct = rng.choice([0, 0, 1])
    vel = rng.randint(62, 100)
    for i in range(nchords):
        deg = prog[i % len(prog)]
        b0 = i * bpc
        last = i == nchords - 1
        bass = key.pitch(deg, -2 if key.tonic > 58 else -1)
        if style in ("melody", "ballad", "block"):
            lh = voice_near(key.chord(deg), 52)
            if style == "block":
                rh = voice_near(key.chord(deg, size=4 if rng.random() < .5 else 3),
                                67 + 12 * rh_oct)
                for k in range(int(bpc)):
                    s.chord(0, rh, vel - (8 if k % 2 else 0), b0 + k, 0.9)
                s.note(0, bass, vel, b0, bpc * (2.0 if last else 1.0))
            else:
                s.note(0, bass, vel - 5, b0, bpc * (2.0 if last else 1.0))
                s.chord(0, lh, vel - 18, b0 + (0.0 if style == "ballad" else 1.0),
                        bpc - (0.0 if style == "ballad" else 1.0))
        elif style in ("arpeggio",):
            tones = voice_near(key.chord(deg), 57) + [key.chord(deg)[0] + 12]
            pattern = [0, 1, 2, 3, 2, 1, 0, 1] if rng.random() < .5 else [0, 2, 1, 3, 1, 2, 0, 3]
            s.note(0, bass, vel, b0, bpc)
            step = 0.5 if bpm < 110 else 0.5
            for k in range(int(bpc / step)):
                p = tones[pattern[k % len(pattern)]] + 12 * rh_oct
                s.note(0, p, vel - 12 + (6 if k == 0 else 0), b0 + k * step, step * 1.6)
        elif style == "alberti":
            c = voice_near(key.chord(deg), 50)
            for k in range(int(bpc * 2)):
                p = (c[0], c[2], c[1], c[2])[k % 4]
                s.note(0, p, vel - 22, b0 + k * 0.5, 0.5)
        elif style == "ragtime":
            c = voice_near(key.chord(deg), 55)
            for k in range(int(bpc)):
                if k % 2 == 0:
                    s.note(0, bass - (12 if bass > 45 else 0), vel, b0 + k, 0.45)
                else:
                    s.chord(0, c, vel - 10, b0 + k, 0.4)
    if style in ("melody", "alberti", "ballad", "ragtime"):
        rhythms = {
            "melody": ([1, 1], [0.5, 0.5, 1], [1.5, 0.5], [2]),
            "alberti": ([1, 1], [0.5, 0.5, 0.5, 0.5], [2]),
            "ballad": ([2], [1.5, 0.5], [1, 1], [3, 1]),
            "ragtime": ([0.5, 0.5, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5], [1, 0.5, 0.5]),
        }[style]
        mel = melody_line(rng, key, prog, bpc, nchords * bpc - bpc, 1, rhythms)
        for b, d, p in mel:
            s.note(0, p, vel + rng.randint(-4, 8), b, d * 0.95)
        final = key.chord(prog[(nchords - 1) % len(prog)])
        s.note(0, voice_near(final, 74)[-1], vel, (nchords - 1) * bpc, bpc * 1.5)
    s.cc(0, 64, 127 if style in ("ballad", "melody", "arpeggio") else 0, 0)
    return s


def gen_strings(rng, idx, target):
    style = ("pad", "violin", "cello", "tremolo", "pad", "violin", "swell", "octaves")[idx % 8]
    bpm = rng.uniform(56, 92)
    s = Song(bpm, rng, swing_ms=10)
    key, prog = random_key(rng, 55, 65, minor_p=0.5)
    total = ending_beats(s, target)
    bpc = max(2.0, min(4.0, total / 3))
    nchords = max(2, int(math.ceil(total / bpc)))
    ens = 44 if style == "tremolo" else rng.choice([48, 48, 49])
    s.setup(0, ens, volume=105, reverb=rng.randint(50, 90), pan=rng.randint(50, 78))
    vel = rng.randint(70, 105)
    centre = rng.choice([55, 60, 64])
    for i in range(nchords):
        deg = prog[i % len(prog)]
        c = voice_near(key.chord(deg, size=3), centre)
        dur = bpc * (1.6 if i == nchords - 1 else 1.0) + 0.05   # legato overlap
        s.chord(0, [key.pitch(deg, -1)] + c, vel, i * bpc, dur)
    if style in ("swell", "pad"):
        steps = 24
        for k in range(steps + 1):
            t = k / steps * nchords * bpc
            x = 0.5 - 0.5 * math.cos(2 * math.pi * k / steps * (nchords / 2))
            s.cc(0, 11, 70 + 57 * x, t)
    if style in ("violin", "octaves"):
        s.setup(1, 40, volume=112, reverb=70, pan=rng.randint(40, 60))
        mel = melody_line(rng, key, prog, bpc, nchords * bpc, 1,
                          ([2], [1, 1], [1.5, 0.5], [0.5, 0.5, 1]), leap_p=0.15)
        for b, d, p in mel:
            s.note(1, p, vel + 5, b, d + 0.08)          # slurred
            if style == "octaves":
                s.note(0, p - 12, vel - 5, b, d + 0.08)
    if style == "cello":
        s.setup(1, 42, volume=115, reverb=60, pan=rng.randint(70, 90))
        mel = melody_line(rng, key, prog, bpc, nchords * bpc, -1,
                          ([2], [1, 1], [1.5, 0.5], [0.5, 0.5, 1]), leap_p=0.1)
        for b, d, p in mel:
            s.note(1, p, vel + 5, b, d + 0.08)
    return s


GUITAR_PATTERNS = ([0, 3, 2, 3, 1, 3, 2, 3], [0, 2, 3, 1, 4, 1, 3, 2],
                   [0, 1, 2, 3, 4, 3, 2, 1], [0, 3, 1, 4, 0, 3, 1, 4])


def guitar_voicing(key: Key, deg: int) -> list[int]:
    """Six-string-ish voicing: bass in E2..A2 range, open spread above."""
    root = key.pitch(deg, -2)
    while root < 40:
        root += 12
    while root > 52:
        root -= 12
    triad = key.chord(deg)
    return [root, root + 7] + voice_near(triad, 60) + [voice_near([triad[1]], 67)[0] + 0]


def gen_guitar(rng, idx, target):
    style = ("arp", "strum", "arp", "travis", "strum", "arp", "bossa", "ballad")[idx % 8]
    prog_num = 24 if idx % 2 == 0 else 25
    bpm = rng.uniform(80, 128) if style != "ballad" else rng.uniform(62, 80)
    s = Song(bpm, rng, swing_ms=8)
    s.setup(0, prog_num, volume=115, reverb=rng.randint(25, 60), pan=rng.randint(48, 80))
    key, prog = random_key(rng, 52, 62)
    total = ending_beats(s, target)
    bpc = 2.0 if total < 9 else 4.0
    nchords = max(2, int(math.ceil(total / bpc)))
    vel = rng.randint(70, 105)
    pat = rng.choice(GUITAR_PATTERNS)
    for i in range(nchords):
        deg = prog[i % len(prog)]
        v = guitar_voicing(key, deg)
        b0 = i * bpc
        last = i == nchords - 1
        if last:
            s.chord(0, v, vel, b0, bpc * 2, spread=0.06)
            continue
        if style in ("arp", "ballad"):
            step = 0.5
            for k in range(int(bpc / step)):
                j = pat[k % len(pat)]
                s.note(0, v[0] if k == 0 else v[1 + j % 5], vel - (0 if k % 2 == 0 else 12),
                       b0 + k * step, step * 3)
        elif style == "strum":
            strums = rng.choice(([0, 1, 1.5, 2.5, 3], [0, 1, 2, 2.5, 3.5], [0, 0.5, 1.5, 2, 3]))
            for t in strums:
                if t >= bpc:
                    continue
                down = (t * 2) % 2 == 0
                order = v if down else list(reversed(v[2:]))
                s.chord(0, order, vel - (0 if down else 15), b0 + t, 0.5 if not down else 0.9,
                        spread=0.035)
        elif style == "travis":
            for k in range(int(bpc * 2)):
                if k % 2 == 0:
                    s.note(0, v[0] if (k // 2) % 2 == 0 else v[1], vel, b0 + k * 0.5, 0.9)
                else:
                    s.note(0, v[3 + (k // 2) % 3], vel - 10, b0 + k * 0.5, 0.7)
        elif style == "bossa":
            s.note(0, v[0], vel, b0, 1.4)
            s.note(0, v[1], vel - 5, b0 + 1.5, 0.45)
            for t in (0.0, 0.75, 1.5) if bpc == 2 else (0.0, 0.75, 1.5, 2.5, 3.25):
                s.chord(0, v[2:5], vel - 15, b0 + t, 0.4, spread=0.01)
    return s


def gen_brass(rng, idx, target):
    style = ("fanfare", "stabs", "chorale", "trumpet", "fanfare", "trombone",
             "stabs", "horns")[idx % 8]
    bpm = rng.uniform(60, 84) if style in ("chorale", "horns") else rng.uniform(92, 138)
    s = Song(bpm, rng, swing_ms=8)
    key, prog = random_key(rng, 53, 63, minor_p=0.3)
    total = ending_beats(s, target)
    bpc = 2.0 if total < 9 else 4.0
    nchords = max(2, int(math.ceil(total / bpc)))
    vel = rng.randint(80, 115)
    lead = {"fanfare": 56, "stabs": 61, "chorale": 57, "trumpet": 56, "trombone": 57,
            "horns": 60}[style]
    s.setup(0, lead, volume=110, reverb=rng.randint(35, 70), pan=rng.randint(50, 78))
    s.setup(1, rng.choice([57, 58, 61]), volume=100, reverb=50, pan=rng.randint(40, 70))
    for i in range(nchords):
        deg = prog[i % len(prog)]
        b0 = i * bpc
        last = i == nchords - 1
        c = key.chord(deg)
        if style == "fanfare":
            tri = voice_near(c, 72)
            figure = rng.choice(([0.33, 0.33, 0.34, 1], [0.5, 0.25, 0.25, 1], [1, 0.5, 0.5]))
            b = b0
            for j, d in enumerate(figure):
                s.note(0, tri[j % 3] if j < len(figure) - 1 else tri[-1], vel + (8 if j == 0 else 0),
                       b, d * 0.85)
                b += d
            s.chord(1, voice_near(c, 55), vel - 15, b0, bpc * (1.8 if last else 0.95))
        elif style == "stabs":
            hits = rng.choice(([0, 1.5], [0, 0.5, 1.5], [0.5, 1, 1.75]))
            v = voice_near(c + [c[0] + 12], 64)
            for t in hits:
                s.chord(0, v, vel, b0 + t, 0.35)
            if last:
                s.chord(0, v, vel + 5, b0 + bpc, 1.5)
            s.note(1, key.pitch(deg, -1), vel - 10, b0, 0.9)
        elif style in ("chorale", "horns"):
            s.chord(0, voice_near(c, 60 if style == "chorale" else 62), vel - 10, b0,
                    bpc * (1.6 if last else 1.0) + 0.05)
            s.note(1, key.pitch(deg, -2 if key.tonic > 57 else -1), vel - 15, b0,
                   bpc * (1.6 if last else 1.0))
        elif style in ("trumpet", "trombone"):
            s.chord(1, voice_near(c, 55), vel - 25, b0, bpc * (1.6 if last else 1.0))
    if style in ("trumpet", "trombone"):
        octave = 1 if style == "trumpet" else -1
        mel = melody_line(rng, key, prog, bpc, nchords * bpc - 0.5, octave,
                          ([1, 0.5, 0.5], [1.5, 0.5], [0.5, 0.5, 1], [2]))
        for b, d, p in mel:
            s.note(0, p, vel, b, d * 0.9)
    return s


# GM percussion keys
KICK, SNARE, RIM, CLAP, CH, PH, OH, CRASH, RIDE, BELL = 36, 38, 37, 39, 42, 44, 46, 49, 51, 53
TOM_LO, TOM_MID, TOM_HI, TAMB, COWBELL, SHAKER = 45, 47, 50, 54, 56, 70

DRUM_GROOVES = {
    # name: list of (instrument, [sixteenth positions in a bar], velocity)
    "rock": [(KICK, [0, 8, 10], 110), (SNARE, [4, 12], 110), (CH, range(0, 16, 2), 80)],
    "funk": [(KICK, [0, 3, 10], 115), (SNARE, [4, 7, 12, 15], 100),
             (CH, range(16), 70), (OH, [14], 75)],
    "halftime": [(KICK, [0, 3, 11], 110), (SNARE, [8], 120), (CH, range(0, 16, 2), 75)],
    "disco": [(KICK, [0, 4, 8, 12], 115), (CLAP, [4, 12], 100), (OH, [2, 6, 10, 14], 85),
              (CH, [0, 4, 8, 12], 60)],
    "shuffle": [(KICK, [0, 8], 110), (SNARE, [4, 12], 100),
                (RIDE, [0, 3, 4, 7, 8, 11, 12, 15], 85)],
    "jazz": [(RIDE, [0, 4, 7, 8, 12, 15], 85), (PH, [4, 12], 70), (KICK, [0], 60),
             (SNARE, [11], 55)],
    "bossa": [(KICK, [0, 6, 8, 14], 95), (RIM, [0, 4, 6, 10, 12], 80),
              (CH, range(0, 16, 2), 65), (SHAKER, range(16), 50)],
    "breakbeat": [(KICK, [0, 10, 11], 115), (SNARE, [4, 12, 15], 105),
                  (CH, range(0, 16, 2), 80), (OH, [6], 80)],
}


def gen_drums(rng, idx, target):
    style = ("rock", "funk", "halftime", "disco", "shuffle", "jazz", "bossa", "breakbeat")[idx % 8]
    bpm = {"halftime": (70, 90), "disco": (112, 126), "funk": (92, 110), "jazz": (120, 160),
           "bossa": (110, 135)}.get(style, (84, 130))
    bpm = rng.uniform(*bpm)
    s = Song(bpm, rng, swing_ms=5)
    kit = rng.choice([0, 0, 8, 16]) if style not in ("jazz",) else 32   # standard/room/power/jazz
    s.setup(DRUM_CH, kit, volume=115, reverb=rng.randint(15, 45))
    n_beats = max(4, int(ending_beats(s, target)))   # whole beats; final crash lands in time
    vscale = rng.uniform(0.8, 1.08)
    groove = DRUM_GROOVES[style]
    swing = style in ("shuffle", "jazz")
    fill_from = (n_beats - 2) * 4 if n_beats >= 6 else None   # sixteenth where the fill starts
    for six in range(n_beats * 4):
        pos = six % 16
        beat = six / 4.0
        if swing:                      # triplet feel: 16ths 1 -> 1/3, 2 and 3 -> 2/3
            beat = six // 4 + (0.0, 1 / 3, 2 / 3, 2 / 3)[pos % 4]
        in_fill = fill_from is not None and six >= fill_from
        for inst, positions, v in groove:
            if pos not in {p % 16 for p in positions}:
                continue
            if in_fill and inst not in (RIDE, CH, SHAKER):
                continue
            vv = v * vscale + rng.randint(-10, 6) + (8 if pos % 4 == 0 else 0)
            s.note(DRUM_CH, inst, vv, beat, 0.2)
        if in_fill and (six - fill_from) % (1 if style in ("funk", "breakbeat") else 2) == 0:
            k = six - fill_from
            toms = (TOM_HI, TOM_HI, TOM_MID, TOM_MID, TOM_LO, TOM_LO, SNARE, SNARE) \
                if idx % 2 else (SNARE, SNARE, TOM_HI, SNARE, TOM_MID, SNARE, TOM_LO, KICK)
            s.note(DRUM_CH, toms[k % 8], (72 + 5 * k) * vscale, beat, 0.2)
    if rng.random() < 0.6 or style in ("rock", "disco"):
        s.note(DRUM_CH, CRASH, 100 * vscale, 0, 1.0)
    s.note(DRUM_CH, CRASH, 110 * vscale, n_beats, 1.5)
    s.note(DRUM_CH, KICK, 110 * vscale, n_beats, 0.5)
    return s


def gen_organ(rng, idx, target):
    style = ("hymn", "drawbar", "rock", "hymn", "perc", "reed", "drawbar", "toccata")[idx % 8]
    prog_num = {"hymn": 19, "toccata": 19, "drawbar": 16, "rock": 18, "perc": 17,
                "reed": 20}[style]
    bpm = rng.uniform(60, 84) if style in ("hymn", "reed") else rng.uniform(90, 130)
    s = Song(bpm, rng, swing_ms=4)
    s.setup(0, prog_num, volume=105, reverb=rng.randint(30, 100) if style in ("hymn", "toccata")
            else rng.randint(20, 50), chorus=20 if prog_num in (16, 17, 18) else 0)
    key, prog = random_key(rng, 53, 64, minor_p=0.45 if style != "toccata" else 1.0)
    total = ending_beats(s, target)
    bpc = 2.0 if total < 9 else 4.0
    nchords = max(2, int(math.ceil(total / bpc)))
    vel = rng.randint(80, 110)
    for i in range(nchords):
        deg = prog[i % len(prog)]
        b0 = i * bpc
        last = i == nchords - 1
        c = key.chord(deg, size=3)
        pedal = key.pitch(deg, -2)
        while pedal < 33:
            pedal += 12
        if style in ("hymn", "reed"):
            # four-part chorale: pedal + three upper voices, with passing motion
            upper = voice_near(c, 62 + rng.choice([0, 3]))
            s.note(0, pedal, vel, b0, bpc * (1.5 if last else 1.0) + 0.02)
            if not last and rng.random() < 0.6:
                s.chord(0, upper, vel - 10, b0, bpc / 2 + 0.02)
                upper2 = voice_near(key.chord(deg, size=4)[1:], 64)
                s.chord(0, upper2, vel - 10, b0 + bpc / 2, bpc / 2 + 0.02)
            else:
                s.chord(0, upper, vel - 10, b0, bpc * (1.5 if last else 1.0) + 0.02)
        elif style in ("drawbar", "perc"):
            v = voice_near(key.chord(deg, size=4), 62)
            hits = ([0, 1.5] if bpc == 2 else [0, 1.5, 2.5, 3.5]) if style == "drawbar" \
                else [k * 0.5 for k in range(int(bpc * 2)) if k % 3 != 2]
            s.note(0, pedal + 12, vel, b0, 0.9)
            s.note(0, pedal + 19, vel - 15, b0 + 1, 0.9)
            for t in hits:
                s.chord(0, v, vel - 12, b0 + t, 0.4 if style == "perc" else 0.8)
            if last:
                s.chord(0, v, vel - 5, b0 + bpc, 1.5)
        elif style == "rock":
            riff = rng.choice(([0, 0, 3, 4, 3, 0], [0, 2, 3, 2, 0, -1], [0, 4, 3, 2, 0, 0]))
            for k, r in enumerate((riff * 2)[: int(bpc * 2)]):
                s.note(0, key.pitch(deg + r, 0), vel, b0 + k * 0.5, 0.45)
            s.chord(0, voice_near(c, 67), vel - 8, b0, bpc * (1.5 if last else 0.95))
            s.note(0, pedal, vel - 10, b0, bpc * 0.9)
        elif style == "toccata":
            run = [key.pitch(deg + k, 1) for k in (4, 3, 4, 2, 1, 0, -1, 0)]
            for k, p in enumerate(run[: int(bpc * 4)]):
                s.note(0, p, vel, b0 + k * 0.25, 0.24)
            if bpc == 4:
                for k, p in enumerate(run):
                    s.note(0, p - 12, vel, b0 + 2 + k * 0.25, 0.24)
            s.chord(0, [pedal, pedal + 12] + voice_near(c, 55), vel,
                    b0 + (bpc if last else bpc / 2), 1.5 if last else bpc / 2)
    return s


def gen_woodwind(rng, idx, target):
    lead = (73, 71, 68, 73, 71, 70, 72, 74)[idx % 8]   # flute, clarinet, oboe, bassoon, piccolo, recorder
    bpm = rng.uniform(70, 120)
    s = Song(bpm, rng, swing_ms=8)
    s.setup(0, lead, volume=115, reverb=rng.randint(40, 80), pan=rng.randint(50, 78))
    s.setup(1, rng.choice([71, 70, 68]), volume=90, reverb=60, pan=rng.randint(40, 60))
    key, prog = random_key(rng, 55, 65)
    total = ending_beats(s, target)
    bpc = 2.0 if total < 9 else 4.0
    nchords = max(2, int(math.ceil(total / bpc)))
    vel = rng.randint(75, 105)
    octave = {70: -1, 72: 1, 71: 0}.get(lead, 1 if lead in (73, 74) else 0)
    mel = melody_line(rng, key, prog, bpc, nchords * bpc - 0.5, octave,
                      ([1, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [1.5, 0.5], [2], [1, 1]))
    for b, d, p in mel:
        s.note(0, p, vel, b, d * 0.92)
    for i in range(nchords):
        deg = prog[i % len(prog)]
        s.note(1, key.pitch(deg, -1), vel - 20, i * bpc, bpc * 0.95)
    return s


def gen_synth(rng, idx, target):
    style = ("lead", "pad", "arp", "lead", "pad", "bass", "arp", "pad")[idx % 8]
    bpm = rng.uniform(96, 132)
    s = Song(bpm, rng, swing_ms=2)
    key, prog = random_key(rng, 53, 64, minor_p=0.6)
    total = ending_beats(s, target)
    bpc = 2.0 if total < 9 else 4.0
    nchords = max(2, int(math.ceil(total / bpc)))
    vel = rng.randint(85, 115)
    if style == "pad":
        s.setup(0, rng.choice([88, 89, 90, 91, 94, 95]), volume=110, reverb=80, chorus=40)
        for i in range(nchords):
            deg = prog[i % len(prog)]
            s.chord(0, [key.pitch(deg, -1)] + voice_near(key.chord(deg, size=4), 62), vel,
                    i * bpc, bpc * (1.5 if i == nchords - 1 else 1.0) + 0.05)
    else:
        s.setup(0, {"lead": rng.choice([80, 81, 84, 87]), "arp": rng.choice([81, 80, 84]),
                    "bass": rng.choice([38, 39])}[style], volume=105, reverb=40, chorus=30)
        s.setup(1, rng.choice([89, 90, 91]), volume=80, reverb=70)
        for i in range(nchords):
            deg = prog[i % len(prog)]
            b0 = i * bpc
            c = key.chord(deg)
            s.chord(1, voice_near(c, 60), vel - 25, b0, bpc + 0.05)
            if style == "arp":
                tones = voice_near(c, 67) + [voice_near(c, 67)[0] + 12]
                for k in range(int(bpc * 4)):
                    s.note(0, tones[k % 4], vel - (0 if k % 4 == 0 else 15), b0 + k * 0.25, 0.2)
            elif style == "bass":
                for k in range(int(bpc * 2)):
                    s.note(0, key.pitch(deg, -2) + (12 if k % 4 == 3 else 0), vel, b0 + k * 0.5, 0.4)
        if style == "lead":
            mel = melody_line(rng, key, prog, bpc, nchords * bpc - 0.5, 1,
                              ([0.5, 0.5, 1], [0.75, 0.75, 0.5], [1, 1], [0.25, 0.25, 0.5, 1]))
            for b, d, p in mel:
                s.note(0, p, vel, b, d * 0.9)
    return s


GENERATORS = {
    "piano": gen_piano,
    "strings": gen_strings,
    "guitar": gen_guitar,
    "brass": gen_brass,
    "drums": gen_drums,
    "organ": gen_organ,
    # Not in the default set (the 6 MB budget fits six lossless classes);
    # add with --classes ...,woodwind,synth (use --format ogg to stay small).
    "woodwind": gen_woodwind,
    "synth": gen_synth,
}
DEFAULT_CLASSES = ("piano", "strings", "guitar", "brass", "drums", "organ")

# --------------------------------------------------------------------------
# Rendering and post-processing
# --------------------------------------------------------------------------


def render(midi_path: Path, wav_path: Path, soundfont: str, fluidsynth: str) -> None:
    cmd = [fluidsynth, "-ni", "-q", "-g", "0.8", "-r", str(SR), "-R", "1", "-C", "1",
           "-o", "synth.cpu-cores=1", "-F", str(wav_path), soundfont, str(midi_path)]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0 or not wav_path.exists():
        raise RuntimeError(f"fluidsynth failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}")


def db(x: float) -> float:
    return 20 * math.log10(max(x, 1e-12))


def postprocess(audio: np.ndarray, sr: int, target_s: float, peak_dbfs: float,
                fade_out_s: float) -> np.ndarray:
    x = audio.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)                       # mono downmix
    x -= x.mean()                                # remove any DC
    peak = np.max(np.abs(x))
    if peak <= 0:
        raise RuntimeError("rendered silence")
    # silence trim on a short-window envelope, relative to the clip's peak
    win = int(0.01 * sr)
    env = np.sqrt(np.convolve(x ** 2, np.ones(win) / win, mode="same"))
    thr = peak * 10 ** (-50 / 20)
    loud = np.flatnonzero(env > thr)
    start = max(0, loud[0] - int(0.005 * sr))
    end = min(len(x), loud[-1] + 1)
    x = x[start:end]
    # fit the target length: cut long renders, keep a natural decay otherwise
    n_target = int(round(target_s * sr))
    if len(x) > n_target:
        x = x[:n_target]
    x = x[: int(MAX_S * sr)]
    if len(x) < MIN_S * sr:
        raise RuntimeError(f"clip too short after trim: {len(x) / sr:.2f}s")
    # fades
    fi = int(0.004 * sr)
    x[:fi] *= np.linspace(0.0, 1.0, fi)
    fo = min(len(x) // 3, int(fade_out_s * sr))
    x[-fo:] *= np.cos(np.linspace(0.0, math.pi / 2, fo)) ** 2
    # peak normalise
    x *= 10 ** (peak_dbfs / 20) / np.max(np.abs(x))
    return x.astype(np.float32)


def clip_seed(seed: int, label: str, idx: int) -> int:
    return zlib.crc32(f"{seed}:{label}:{idx}".encode()) & 0x7FFFFFFF


def make(out: Path, seed: int, soundfont: str, classes, fmt: str,
         keep_midi: Path | None, fluidsynth: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="perceptlab-demo-") as tmp:
        tmp = Path(tmp)
        for label in classes:
            gen = GENERATORS[label]
            cdir = out / label
            if cdir.exists():
                for old in cdir.glob(f"{label}_*.*"):
                    old.unlink()
            cdir.mkdir(parents=True, exist_ok=True)
            for idx in range(CLIPS_PER_CLASS):
                rng = random.Random(clip_seed(seed, label, idx))
                target = rng.uniform(3.2, 5.0)   # mean ~4.1 s keeps FLAC < 6 MB
                peak_dbfs = -1.0 - rng.uniform(0.0, 1.5)
                fade_out = rng.uniform(0.25, 0.6)
                song = gen(rng, idx, target)
                name = f"{label}_{idx + 1:02d}"
                mid = tmp / f"{name}.mid"
                mid.write_bytes(song.to_bytes())
                if keep_midi is not None:
                    keep_midi.mkdir(parents=True, exist_ok=True)
                    shutil.copy(mid, keep_midi / mid.name)
                wav = tmp / f"{name}.wav"
                render(mid, wav, soundfont, fluidsynth)
                audio, sr = sf.read(str(wav), always_2d=True)
                if sr != SR:
                    raise RuntimeError(f"{wav}: fluidsynth wrote {sr} Hz, expected {SR}")
                y = postprocess(audio, sr, target, peak_dbfs, fade_out)
                dest = cdir / f"{name}.{fmt}"
                if fmt == "flac":
                    sf.write(str(dest), y, sr, format="FLAC", subtype="PCM_16")
                else:
                    sf.write(str(dest), y, sr, format="OGG", subtype="VORBIS")
                wav.unlink()
                written.append(dest)
                print(f"{dest}  {len(y) / sr:4.2f}s  bpm={song.bpm:5.1f}", flush=True)
    return written


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------


def mean_log_spectrum(y: np.ndarray, n_fft: int = 1024, hop: int = 512) -> np.ndarray:
    win = np.hanning(n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop] * win
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    # 64 log-spaced bands between ~40 Hz and Nyquist
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    edges = np.geomspace(40, SR / 2, 65)
    bands = np.stack([spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) + 1e-10
                      for lo, hi in zip(edges[:-1], edges[1:])], axis=1)
    return np.log10(bands).mean(axis=0)


def check(out: Path, classes=None) -> bool:
    files = sorted(p for p in out.glob("*/*.*") if p.suffix in (".flac", ".ogg"))
    ok = True
    feats, labels = [], []
    print(f"{'file':28s} {'sr':>6s} {'ch':>2s} {'dur_s':>6s} {'peak_dB':>8s} {'rms_dB':>7s} {'kB':>6s}")
    for p in files:
        y, sr = sf.read(str(p), always_2d=True)
        nch = y.shape[1]
        y = y.mean(axis=1)
        dur = len(y) / sr
        peak = db(float(np.max(np.abs(y))))
        rms = db(float(np.sqrt(np.mean(y ** 2))))
        clipped = int(np.sum(np.abs(y) >= 0.999))
        problems = []
        if not MIN_S <= dur <= MAX_S:
            problems.append("duration")
        if rms <= -40:
            problems.append("silent")
        if clipped:
            problems.append(f"clipped({clipped})")
        if sr not in (22050, 44100):
            problems.append("rate")
        ok &= not problems
        print(f"{p.parent.name + '/' + p.name:28s} {sr:6d} {nch:2d} {dur:6.2f} {peak:8.2f} "
              f"{rms:7.2f} {p.stat().st_size / 1024:6.1f} {' '.join(problems)}")
        feats.append(mean_log_spectrum(y))
        labels.append(p.parent.name)
    total = sum(p.stat().st_size for p in files)
    counts = {lab: labels.count(lab) for lab in sorted(set(labels))}
    print(f"\n{len(files)} clips, classes: {counts}")
    print(f"total size {total / 1e6:.2f} MB ({total / 2**20:.2f} MiB)")
    if total >= 6 * 2**20:
        print("FAIL: over 6 MiB")
        ok = False
    # leave-one-out 1-nearest-neighbour on standardised mean log-spectra
    F = np.array(feats)
    F = (F - F.mean(axis=0)) / (F.std(axis=0) + 1e-9)
    d = ((F[:, None, :] - F[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = d.argmin(axis=1)
    lab = np.array(labels)
    acc = float(np.mean(lab[nn] == lab))
    print(f"1-NN leave-one-out accuracy on mean log-spectrum: {acc:.3f} "
          f"(chance {1 / len(counts):.3f})")
    names = sorted(counts)
    print("confusion (rows=true, cols=nearest):")
    print(" " * 9 + " ".join(f"{n[:7]:>7s}" for n in names))
    for a in names:
        row = [int(np.sum((lab == a) & (lab[nn] == b))) for b in names]
        print(f"{a[:8]:8s} " + " ".join(f"{r:7d}" for r in row))
    print("verification", "PASSED" if ok else "FAILED")
    return ok


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=here / "demo")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--soundfont", default=DEFAULT_SOUNDFONT)
    ap.add_argument("--fluidsynth", default=shutil.which("fluidsynth") or "fluidsynth")
    ap.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                    help=f"comma list from: {', '.join(GENERATORS)}")
    ap.add_argument("--format", choices=("flac", "ogg"), default="flac")
    ap.add_argument("--keep-midi", type=Path, default=None,
                    help="also copy the generated .mid files here")
    ap.add_argument("--check", action="store_true",
                    help="only verify an existing library (no rendering)")
    args = ap.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = [c for c in classes if c not in GENERATORS]
    if unknown:
        ap.error(f"unknown classes: {unknown}")
    if not args.check:
        if not Path(args.soundfont).is_file():
            ap.error(f"soundfont not found: {args.soundfont}")
        make(args.out, args.seed, args.soundfont, classes, args.format, args.keep_midi,
             args.fluidsynth)
    return 0 if check(args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
