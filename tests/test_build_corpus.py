"""Tests for training/build_corpus.py (the general corpus builder).

Most tests need no Debian package: they check the drum-name mapping, the
held-out splits, the MIDI writer and the manifest. The end-to-end ``--quick``
build runs only where fluidsynth and the soundfonts are installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bc():
    spec = importlib.util.spec_from_file_location("build_corpus", ROOT / "training" / "build_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_corpus"] = mod
    spec.loader.exec_module(mod)
    return mod


DRUMKIT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">
 <name>Tiny</name>
 <instrumentList>
  <instrument><id>0</id><name>Kick (22")</name><volume>0.9</volume>
   <layer><filename>bd_soft.wav</filename><min>0</min><max>0.5</max><gain>1.2</gain></layer>
   <layer><filename>bd_hard.wav</filename><min>0.5</min><max>1</max><gain>1</gain></layer>
  </instrument>
  <instrument><id>1</id><name>Closed HH</name><filename>hh.wav</filename></instrument>
  <instrument><id>2</id><name>Hand Clap</name><filename>clap.wav</filename></instrument>
  <instrument><id>3</id><name>Empty</name></instrument>
 </instrumentList>
</drumkit_info>
"""


@pytest.mark.parametrize("name,kind", [
    ("Kick", "kick"), ("BassDrum", "kick"), ("c3 - bass drum 1", "kick"),
    ("VariBreaks Kick 2", "kick"),
    ("Snare Jazz", "snare"), ("Snare (Pearl Free Floating Maple 14x3.5)", "snare"),
    ("Pearl Snare Rimshot", "snare"), ("Snare Roll", None), ("Pearl Side Stick", None),
    ("Closed HH", "hihat-closed"), ("Hi Hat Closed", "hihat-closed"),
    ("VariBreaks Hat 1 Cl", "hihat-closed"), ("f#3 - hi-hat closed", "hihat-closed"),
    ("Open HH", "hihat-open"), ("Hi Hat Opened", "hihat-open"), ("Hat Op Dirty", "hihat-open"),
    ("Pedal HH", None), ("Sabian Hat Semi-Open", None), ("Hi Hat Free", None), ("Side OHH", None),
    ("Tom Low", "tom"), ("Floor Tom", "tom"), ("tomhi2", "tom"), ("Pearl Tom 1", "tom"),
    ("Crash", "cymbal"), ("Ride Jazz", "cymbal"), ("ride-crash20inch", "cymbal"),
    ("China (Paiste Alpha 18\")", "cymbal"), ("Zildjian Splash Choke", None),
    ("Hand Clap", None), ("Cowbell", None), ("Djembe1 Bass", None), ("", None),
])
def test_drum_kind_mapping(bc, name, kind):
    assert bc.drum_kind(name) == kind


def test_parse_drumkit_reads_layers_and_kinds(bc):
    insts = bc.parse_drumkit(DRUMKIT_XML)
    assert [i["name"] for i in insts] == ['Kick (22")', "Closed HH", "Hand Clap"]
    kick = insts[0]
    assert kick["kind"] == "kick" and kick["volume"] == pytest.approx(0.9)
    assert [lay["filename"] for lay in kick["layers"]] == ["bd_soft.wav", "bd_hard.wav"]
    assert kick["layers"][0]["gain"] == pytest.approx(1.2)
    assert insts[1]["kind"] == "hihat-closed" and insts[1]["layers"][0]["filename"] == "hh.wav"
    assert insts[2]["kind"] is None


def test_kit_split_is_disjoint_and_deterministic(bc):
    kits = [f"kit{i}" for i in range(9)] + list(bc.HELD_OUT_KITS)
    train, held = bc.split_kits(kits)
    assert set(held) == set(bc.HELD_OUT_KITS)
    assert not set(train) & set(held) and set(train) | set(held) == set(kits)
    assert bc.split_kits(list(reversed(kits))) == (train, held)
    with pytest.raises(bc.CorpusError, match="apt-get install -y hydrogen-drumkits"):
        bc.split_kits(["kit0"])


def test_track_split_is_disjoint_deterministic_and_keeps_groups(bc):
    tracks = [{"key": f"{src}/t{i:02d}.ogg", "source": src, "duration": 60.0 + 10 * i}
              for src in ("wesnoth", "warzone") for i in range(16)]
    tracks += [{"key": k, "source": k.split("/")[0], "duration": 300.0}
               for g in bc.MUSIC_GROUPS for k in g]
    tracks.append({"key": "wesnoth/short.ogg", "source": "wesnoth", "duration": 20.0})
    train, held = bc.split_tracks(tracks, 5)
    tk, hk = {t["key"] for t in train}, {t["key"] for t in held}
    assert not tk & hk and tk | hk == {t["key"] for t in tracks}
    assert len(held) == 10 and sum(t["source"] == "wesnoth" for t in held) == 5
    assert not hk & {k for g in bc.MUSIC_GROUPS for k in g}
    assert "wesnoth/short.ogg" in tk
    train2, held2 = bc.split_tracks(list(reversed(tracks)), 5)
    assert [t["key"] for t in held2] == [t["key"] for t in held]
    # adding a track of one source leaves the other source's choice alone
    more = tracks + [{"key": "warzone/zz.ogg", "source": "warzone", "duration": 400.0}]
    _, held3 = bc.split_tracks(more, 5)
    assert {t["key"] for t in held3 if t["source"] == "wesnoth"} == \
        {t["key"] for t in held if t["source"] == "wesnoth"}


def test_seeded_rng_and_phrases_are_deterministic(bc):
    a = bc.make_phrase(bc.seeded_rng("x", 5), 40)
    b = bc.make_phrase(bc.seeded_rng("x", 5), 40)
    c = bc.make_phrase(bc.seeded_rng("x", 6), 40)
    assert a == b and a != c


@pytest.mark.parametrize("program", [0, 24, 33, 40, 58, 73, 88, 127])
def test_phrase_is_playable(bc, program):
    for seed in range(20):
        ph = bc.make_phrase(bc.seeded_rng("t", program, seed), program)
        assert 4.0 <= ph.length_s <= 8.0
        lo, hi = bc.PROGRAM_RANGE.get(program, bc.FAMILY_RANGE[bc.family_of(program)])
        assert ph.notes
        for start, dur, pitch, vel in ph.notes:
            assert 0 <= start and dur > 0 and start + dur <= ph.length_s
            assert lo <= pitch <= hi and 1 <= vel <= 127
    with pytest.raises(ValueError, match="GM program 128"):
        bc.make_phrase(bc.seeded_rng("t"), 128)


def _parse_smf(data: bytes):
    """A minimal standard-MIDI-file reader: (format, division, [(tick, msg)])."""
    assert data[:4] == b"MThd"
    fmt, ntrk, div = int.from_bytes(data[8:10], "big"), int.from_bytes(data[10:12], "big"), \
        int.from_bytes(data[12:14], "big")
    assert ntrk == 1 and data[14:18] == b"MTrk"
    end = 22 + int.from_bytes(data[18:22], "big")
    assert end == len(data)
    p, tick, events = 22, 0, []
    while p < end:
        delta = 0
        while True:
            byte = data[p]
            p += 1
            delta = (delta << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        tick += delta
        status = data[p]
        if status == 0xFF:
            mtype, mlen = data[p + 1], data[p + 2]
            events.append((tick, data[p:p + 3 + mlen]))
            p += 3 + mlen
        else:
            n = 2 if status >> 4 in (0xC, 0xD) else 3
            events.append((tick, data[p:p + n]))
            p += n
    assert events[-1][1] == b"\xff\x2f\x00"
    return fmt, div, events


def test_phrase_schedule_writes_valid_midi(bc):
    phrases = [bc.make_phrase(bc.seeded_rng("midi", i), p) for i, p in enumerate((0, 40, 73))]
    events, starts = bc.phrase_schedule(phrases)
    data = bc.midi_file_bytes(events)
    fmt, div, parsed = _parse_smf(data)
    assert fmt == 0 and div == bc.TICKS_PER_BEAT
    ons = [m for _, m in parsed if m[0] >> 4 == 0x9]
    offs = [m for _, m in parsed if m[0] >> 4 == 0x8]
    assert len(ons) == len(offs) == sum(len(p.notes) for p in phrases)
    programs = [m[1] for _, m in parsed if m[0] >> 4 == 0xC]
    assert programs == [0, 40, 73]
    # slots do not overlap and leave a gap for the release
    for ph, s0, s1 in zip(phrases, starts, starts[1:]):
        assert s1 - s0 == pytest.approx(ph.length_s + bc.GAP_S)
    ticks = [t for t, _ in parsed]
    assert ticks == sorted(ticks)
    mido = pytest.importorskip("mido", reason="mido not installed; the structural check above passed")
    import io
    mf = mido.MidiFile(file=io.BytesIO(data))
    assert sum(1 for m in mf if m.type == "note_on") == len(ons)
    assert mf.length == pytest.approx(max(t for t, _ in events), abs=0.01)


def test_water_fill(bc):
    assert bc.water_fill([10, 100, 100], 150) == pytest.approx([10, 70, 70])
    assert bc.water_fill([1, 2], 10) == pytest.approx([1, 2])


def test_trim_and_silence(bc):
    sr = bc.SR
    x = np.zeros((sr * 2, 2), np.float32)
    x[: sr // 4] = 0.5 * np.sin(np.linspace(0, 400, sr // 4))[:, None]
    y = bc.trim_trailing(x)
    assert sr // 4 <= len(y) <= sr // 4 + int(0.03 * sr)
    assert len(bc.trim_trailing(np.ones((sr * 5, 1), np.float32) * 0.1, max_s=3.0)) == 3 * sr
    assert bc.is_silent(np.zeros((sr, 2), np.float32))
    assert bc.is_silent(np.full((sr, 2), 1e-5, np.float32))
    assert not bc.is_silent(y)
    assert len(bc.pad_to_min(y)) == sr


def test_dep5_licences(bc, tmp_path):
    cp = tmp_path / "copyright"
    cp.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: 2016 A\nLicense: MIT\n\n"
        "Files:\n etc/samples/a.flac\n etc/samples/b_*.flac\nCopyright: B\nLicense: CC0\n\n"
        "Files: etc/samples/c.flac\nCopyright: C\nLicense: CC-BY-SA-4.0\n text of the licence\n")
    st = bc.dep5_stanzas(cp)
    assert bc.licence_by_basename(st, "a.flac") == "CC0"
    assert bc.licence_by_basename(st, "b_x.flac") == "CC0"
    assert bc.licence_by_basename(st, "c.flac") == "CC-BY-SA-4.0"
    assert bc.licence_by_basename(st, "d.flac") == "MIT"
    assert bc.licence_by_basename(st, "d.flac", star=False) is None


def test_opensfx_licence(bc):
    assert bc.opensfx_licence('"A". By X. License: Creative Commons Zero 1.0.') == "CC0-1.0"
    assert bc.opensfx_licence('"B". Original "wfl5.5.wav". License: Creative Commons '
                              'Attribution 3.0 Unported.') == "CC-BY-3.0"
    assert bc.opensfx_licence('"C". License: Creative Commons Attribution-ShareAlike 3.0 '
                              'Unported.') == "CC-BY-SA-3.0"
    assert bc.opensfx_licence('"D". All rights reserved.') is None


def _write_clip(path: Path, seconds: float, freq: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 44100)) / 44100
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * freq * t), 44100, format="FLAC")


def test_manifest_rows_sha256_and_train_list(bc, tmp_path):
    b = bc.Builder(tmp_path)
    _write_clip(tmp_path / "train/sounds/x/a.flac", 1.5, 440)
    _write_clip(tmp_path / "eval/music/t/seg0.flac", 2.0, 550)
    b.add("train/sounds/x/a.flac", "train-sounds", "x", "pkg-a", "usr/share/a.ogg", "CC0")
    b.add("eval/music/t/seg0.flac", "eval-music", "t", "pkg-b", "usr/share/b.ogg", "GPL-2+",
          start_s=3.0)
    b.source("pkg-a", "CC0", "train/sounds")
    m = b.write_manifest(["train-sounds", "eval-music"])
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["files"] == m["files"]
    row = {e["path"]: e for e in m["files"]}["train/sounds/x/a.flac"]
    digest = hashlib.sha256((tmp_path / "train/sounds/x/a.flac").read_bytes()).hexdigest()
    assert row["sha256"] == digest
    assert row["duration_s"] == pytest.approx(1.5) and row["role"] == "train"
    assert row["kind"] == "sounds" and row["licence"] == "CC0"
    assert m["total_hours"]["train/sounds"] == pytest.approx(1.5 / 3600, abs=1e-4)
    assert m["sources"]["pkg-a"]["licences"] == {"CC0": 1}
    assert (tmp_path / "train_files.txt").read_text() == f"train/sounds/x/a.flac {digest}\n"
    # a later run of one part keeps the other part's rows
    b2 = bc.Builder(tmp_path)
    m2 = b2.write_manifest(["train-sounds"])
    assert [e["path"] for e in m2["files"]] == ["eval/music/t/seg0.flac"]


def test_manifest_refuses_train_eval_overlap(bc, tmp_path):
    b = bc.Builder(tmp_path)
    _write_clip(tmp_path / "train/music/t/clip00.flac", 1.0, 440)
    _write_clip(tmp_path / "eval/music/t/seg0.flac", 1.0, 440)  # identical bytes
    b.add("train/music/t/clip00.flac", "train-music", "t", "p", "usr/a.ogg", "GPL-2+")
    b.add("eval/music/t/seg0.flac", "eval-music", "t", "p", "usr/b.ogg", "GPL-2+")
    with pytest.raises(bc.CorpusError, match=r"training and held-out \(evaluation, development\) sets overlap"):
        b.write_manifest(["train-music", "eval-music"])


def test_manifest_refuses_a_development_clip_in_training(bc, tmp_path):
    b = bc.Builder(tmp_path)
    _write_clip(tmp_path / "train/instruments/piano/a.flac", 1.0, 440)
    _write_clip(tmp_path / "dev/instruments/piano/b.flac", 1.0, 550)
    b.add("train/instruments/piano/a.flac", "train-instruments", "piano", "freepats", "x.cfg", "GPL-2+")
    b.add("dev/instruments/piano/b.flac", "dev-instruments", "piano", "freepats", "x.cfg", "GPL-2+")
    with pytest.raises(bc.CorpusError, match="1 shared source files"):
        b.write_manifest(["train-instruments", "dev-instruments"])


def test_missing_package_message(bc, monkeypatch):
    with pytest.raises(bc.CorpusError, match=r"install with apt-get install -y some-pkg"):
        bc.need_path("/nonexistent/font.sf2", "some-pkg", "a soundfont")
    monkeypatch.setattr(bc.shutil, "which", lambda name: None)
    with pytest.raises(bc.CorpusError, match="apt-get install -y fluidsynth"):
        bc.need_fluidsynth()
    with pytest.raises(bc.CorpusError, match="unknown part"):
        bc.parse_parts("eval,bogus")
    assert bc.parse_parts("train-music,eval") == ["eval-instruments", "eval-drums", "eval-music",
                                                  "train-music"]
    assert bc.parse_parts("dev") == ["dev-instruments"]
    with pytest.raises(bc.CorpusError, match="apt-get install -y timidity"):
        bc.need_timidity()
    with pytest.raises(bc.CorpusError, match="freepats timidity configuration not found .* apt-get install -y freepats"):
        bc.freepats_programs("/nonexistent/freepats.cfg")


def test_freepats_programs_are_the_bank_0_bindings_of_its_configuration(bc, tmp_path):
    cfg = tmp_path / "freepats.cfg"
    cfg.write_text("dir /usr/share/midi/freepats\n# a comment\ndrumset 0\n 35\tDrum_000/035_Kick_1.pat amp=100\n"
                   "\nbank 0\n\n 0\tTone_000/000_Acoustic_Grand_Piano.pat amp=120\n 73\tTone_000/073_Flute.pat\n"
                   "bank 8\n 4\tTone_008/004_Other.pat\n")
    assert bc.freepats_programs(cfg) == [0, 73]  # not the drum kit's 35, not bank 8's 4
    cfg.write_text("drumset 0\n 35\tDrum_000/035_Kick_1.pat\n")
    with pytest.raises(bc.CorpusError, match="binds no program of bank 0"):
        bc.freepats_programs(cfg)


def test_a_corpus_is_not_rebuilt_at_another_phrase_scale(bc, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"phrase_scale": 2, "files": []}))
    with pytest.raises(bc.CorpusError, match="built with --phrase-scale 2: .* again with --phrase-scale 2"):
        bc.check_phrase_scale(tmp_path, ["train-instruments"], 1)
    bc.check_phrase_scale(tmp_path, ["train-instruments"], 2)
    bc.check_phrase_scale(tmp_path, ["eval-instruments", "dev-instruments"], 1)  # other parts: any scale
    assert bc.main(["--out", str(tmp_path), "--parts", "train-instruments", "--phrase-scale", "3"]) == 2
    assert bc.main(["--out", str(tmp_path), "--parts", "train-instruments", "--phrase-scale", "0"]) == 2


def _have_renderer(bc) -> bool:
    fonts = [bc.EVAL_FONT["path"]] + [f["path"] for req, f in bc.TRAIN_FONTS
                                      if req and not f["path"].endswith(".sf3")]
    return shutil.which("fluidsynth") is not None and all(Path(p).is_file() for p in fonts)


def _have_freepats(bc) -> bool:
    return shutil.which("timidity") is not None and Path(bc.DEV_PATCHES["config"]).is_file()


def test_freepats_programs_cover_every_evaluated_family(bc):
    if not _have_freepats(bc):
        if os.environ.get("PERCEPTLAB_STRICT") == "1":
            pytest.fail("timidity and freepats are not installed (apt-get install -y timidity freepats)")
        pytest.skip("timidity and freepats are not installed (apt-get install -y timidity freepats)")
    progs = bc.freepats_programs()
    assert 0 in progs and 73 in progs  # acoustic grand piano, flute
    for fam in bc.EVAL_FAMILIES:
        f0 = bc.GM_FAMILIES.index(fam) * 8
        assert any(f0 <= p < f0 + 8 for p in progs), fam


def test_quick_build_end_to_end(bc, tmp_path):
    if not _have_renderer(bc):
        pytest.skip("fluidsynth or the FluidR3_GM / TimGM6mb soundfonts are not installed "
                    "(apt-get install -y fluidsynth fluid-soundfont-gm timgm6mb-soundfont)")
    # the other parts need their own packages; build those that are installed
    parts = ["eval-instruments", "train-instruments"]
    if bc.HYDROGEN_DIR.is_dir():
        parts += ["eval-drums", "train-drums"]
    if all(Path(s["dir"]).is_dir() for s in bc.MUSIC_SOURCES.values()):
        parts += ["eval-music", "train-music"]
    if Path(bc.SONIC_PI["dir"]).is_dir() and Path(bc.OPENSFX["path"]).is_file():
        parts += ["train-sounds"]
    if _have_freepats(bc):
        parts += ["dev-instruments"]
    elif os.environ.get("PERCEPTLAB_STRICT") == "1":
        pytest.fail("timidity and freepats are not installed (apt-get install -y timidity freepats)")
    out = tmp_path / "corpus"
    assert bc.main(["--out", str(out), "--quick", "--parts", ",".join(parts)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    rows = m["files"]
    assert rows and {e["part"] for e in rows} == set(parts)
    for e in rows:
        p = out / e["path"]
        info = sf.info(str(p))
        assert info.samplerate == 44100 and info.format == "FLAC"
        assert e["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        assert e["duration_s"] <= 30.0
        if e["role"] == "train":
            assert e["duration_s"] >= 1.0
        assert e["licence"] and e["source_package"]
    train_fonts = {e.get("soundfont") for e in rows if e["part"] == "train-instruments"}
    assert "fluidr3" not in train_fonts
    assert all(e["source_package"] == "fluid-soundfont-gm" for e in rows
               if e["part"] == "eval-instruments")
    assert not any(e["source_package"] == "fluid-soundfont-gm" for e in rows if e["role"] == "train")
    if "dev-instruments" in parts:
        dev = [e for e in rows if e["part"] == "dev-instruments"]
        assert {e["label"] for e in dev} == set(bc.EVAL_FAMILIES[:3])
        assert all(e["source_package"] == "freepats" and e["role"] == "dev" for e in dev)
        assert not any(e["source_package"] == "freepats" for e in rows if e["role"] == "train")
    listed = (out / "train_files.txt").read_text().splitlines()
    assert sorted(listed) == sorted(f"{e['path']} {e['sha256']}" for e in rows if e["role"] == "train")
    # held-out instruments: several phrases of each program, the program first in the name
    held = [e for e in rows if e["part"] in ("eval-instruments", "dev-instruments")]
    for e in held:
        name = Path(e["path"]).name
        assert name.startswith(f"{e['gm_program']:03d}-") and name.endswith(f"-{e['phrase']}.flac")
        assert re.match(bc.HELD_OUT_SOURCE_PATTERN, name).group(0) == f"{e['gm_program']:03d}"
    ev = [e for e in held if e["part"] == "eval-instruments"]
    assert sorted({e["phrase"] for e in ev}) == [0, 1]
    assert len({(e["gm_program"], e["phrase"]) for e in ev}) == len(ev) == 3 * 2 * 2
    # a resumed run writes nothing new and gives the same manifest; a clip of an older
    # layout left in a held-out folder is removed, so it can never be scored
    before = {e["path"]: e["sha256"] for e in rows}
    stale = [out / "eval" / "instruments" / bc.EVAL_FAMILIES[0] / "000-acoustic-grand-piano.flac",
             out / "eval" / "instruments" / bc.EVAL_FAMILIES[5] / "040-violin.flac"]  # a family not planned
    for f in stale:
        f.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / ev[0]["path"], f)
    assert bc.main(["--out", str(out), "--quick", "--resume", "--parts", ",".join(parts)]) == 0
    after = {e["path"]: e["sha256"] for e in json.loads((out / "manifest.json").read_text())["files"]}
    assert after == before
    assert not any(f.exists() for f in stale)
    assert all((out / e["path"]).is_file() for e in held)
    # and a fresh build of the instruments renders the same bytes
    out2 = tmp_path / "again"
    assert bc.main(["--out", str(out2), "--quick", "--parts", "eval-instruments"]) == 0
    again = {e["path"]: e["sha256"] for e in json.loads((out2 / "manifest.json").read_text())["files"]}
    assert again == {k: v for k, v in before.items() if k.startswith("eval/instruments/")}


def test_a_quick_build_into_a_full_corpus_is_refused(bc, tmp_path, capsys):
    # A quick build's held-out sets would replace (and so delete) a full corpus's.
    (tmp_path / "manifest.json").write_text(json.dumps({"quick": False, "files": []}))
    assert bc.main(["--out", str(tmp_path), "--quick", "--parts", "eval-instruments"]) == 2
    assert "holds a full corpus: a --quick build would replace its sets" in capsys.readouterr().err
    bc.check_quick(tmp_path, quick=False)  # a full build over a full corpus: fine
    (tmp_path / "manifest.json").write_text(json.dumps({"quick": True, "files": []}))
    bc.check_quick(tmp_path, quick=True)  # a quick build over a quick one: fine
