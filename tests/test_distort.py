"""Stimulus generator: every recipe reproducible, levels and cut-offs as asked, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from perceptlab.audio.distort import Recipe, apply, kinds
from perceptlab.library.stimuli import list_stimuli, render_stimulus
from perceptlab.library.importer import import_files
from perceptlab.library.store import Library
from conftest import write_clip

RATE = 44100


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def music(seconds=1.0, rate=RATE, seed=0):
    """Harmonics up to 12 kHz plus a little noise: energy across the spectrum."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * f * t + i) / (i + 1)
            for i, f in enumerate([220, 440, 660, 1320, 2640, 5280, 9000, 12000]) if f < rate / 2)
    return (0.2 * x + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def band_energy(y, rate, lo, hi):
    w = np.hanning(y.size)
    spec = np.abs(np.fft.rfft(y.astype(np.float64) * w)) ** 2
    f = np.fft.rfftfreq(y.size, 1 / rate)
    return spec[(f >= lo) & (f < hi)].sum()


ALL = [
    "identity", "white_noise:snr_db=10", "pink_noise:snr_db=5,seed=3", "lowpass:cutoff_hz=3500",
    "mp3:bitrate_kbps=64", "clip:threshold=0.5", "reverb:rt60_s=0.5,wet=0.4,seed=2",
    "eq_tilt:db_per_octave=-3", "gain:db=-6", "time_shift:seconds=-0.05", "pitch_shift:semitones=2",
    "time_stretch:rate=1.25", "echo:delay_s=0.05", "reverse",
]


def test_every_kind_is_covered_and_reproducible_bit_for_bit():
    assert {Recipe.parse(t).kind for t in ALL} == set(kinds())
    x = music(0.6)
    for text in ALL:
        r = Recipe.parse(text)
        again = Recipe.from_json(json.loads(json.dumps(r.to_json())))
        assert again == r and again.key == r.key
        y1, y2 = apply(r, x, RATE), apply(again, x.copy(), RATE)
        assert y1.dtype == np.float32 and np.isfinite(y1).all(), text
        assert y1.tobytes() == y2.tobytes(), text
        expected = round(x.size / 1.25) if r.kind == "time_stretch" else x.size
        assert y1.size == expected, text


def test_the_seed_changes_the_random_parts_only():
    x = music(0.5)
    for text in ("white_noise:snr_db=10", "pink_noise:snr_db=10", "reverb:rt60_s=0.3"):
        a, b = apply(Recipe.parse(text, seed=1), x, RATE), apply(Recipe.parse(text, seed=2), x, RATE)
        assert not np.array_equal(a, b), text
    g1, g2 = apply(Recipe.parse("gain:db=3", seed=1), x, RATE), apply(Recipe.parse("gain:db=3", seed=9), x, RATE)
    assert np.array_equal(g1, g2)


@pytest.mark.parametrize("kind", ["white_noise", "pink_noise"])
@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 30.0])
def test_snr_measured_on_the_output_matches_the_request(kind, snr):
    x = music(1.0, seed=4)
    y = apply(Recipe(kind, {"snr_db": snr}, seed=7), x, RATE)
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(noise ** 2))
    assert abs(measured - snr) < 0.5
    assert abs(measured - snr) < 0.01  # in fact exact up to float32 rounding


def test_pink_noise_is_pink():
    tiny = np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    y = apply(Recipe("pink_noise", {"snr_db": -30}), tiny, RATE)  # the noise is 1000x the signal
    # 1/f: equal energy per octave, so 1-2 kHz and 4-8 kHz carry about the same.
    lo, hi = band_energy(y, RATE, 1000, 2000), band_energy(y, RATE, 4000, 8000)
    assert abs(10 * np.log10(hi / lo)) < 1.5


@pytest.mark.parametrize("rate", [44100, 48000, 22050])
@pytest.mark.parametrize("cutoff", [3500.0, 7000.0])
def test_lowpass_anchors_measured_cutoff(rate, cutoff):
    x = music(1.0, rate)
    y = apply(Recipe("lowpass", {"cutoff_hz": cutoff}), x, rate)
    stop = 10 * np.log10(band_energy(y, rate, 1.1 * cutoff, rate / 2) / band_energy(x, rate, 1.1 * cutoff, rate / 2))
    passband = 10 * np.log10(band_energy(y, rate, 50, 0.9 * cutoff) / band_energy(x, rate, 50, 0.9 * cutoff))
    assert stop < -40.0, f"only {stop:.1f} dB above {1.1 * cutoff:.0f} Hz"
    assert abs(passband) < 0.1


def test_lowpass_cutoff_must_be_below_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        apply(Recipe("lowpass", {"cutoff_hz": 7000}), music(0.2, 11025), 11025)


@pytest.mark.parametrize("rate,kbps", [(44100, 128), (44100, 32), (22050, 32)])
def test_mp3_round_trip(rate, kbps):
    x = music(1.0, rate)
    y = apply(Recipe("mp3", {"bitrate_kbps": kbps}), x, rate)
    assert y.size == x.size and not np.array_equal(x, y)
    # Time-aligned (codec delay removed) and close to the input.
    err = y.astype(np.float64) - x
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(err ** 2))
    assert snr > 5.0
    assert np.corrcoef(x, y)[0, 1] > 0.9


def test_mp3_bitrate_must_exist_at_the_rate():
    with pytest.raises(ValueError, match="MPEG-2 bitrate at 22050"):
        apply(Recipe("mp3", {"bitrate_kbps": 320}), music(0.2, 22050), 22050)
    with pytest.raises(ValueError, match="MPEG-1 bitrate"):
        apply(Recipe("mp3", {"bitrate_kbps": 100}), music(0.2), RATE)


def test_simple_kinds_do_exactly_what_they_say():
    x = music(0.5)
    peak = np.abs(x).max()
    y = apply(Recipe("clip", {"threshold": 0.25}), x, RATE)
    assert np.abs(y).max() == pytest.approx(0.25 * peak, rel=1e-6)
    assert np.array_equal(apply(Recipe("gain", {"db": -20}), x, RATE), (x.astype(np.float64) * 0.1).astype(np.float32))
    k = int(0.01 * RATE)
    s = apply(Recipe("time_shift", {"seconds": 0.01}), x, RATE)
    assert np.array_equal(s[k:], x[:-k]) and not s[:k].any()
    assert np.array_equal(apply(Recipe("reverb", {"rt60_s": 0.4, "wet": 0.0}), x, RATE), x)
    # Tilt: +3 dB/octave is +6 dB two octaves above the pivot.
    t = np.arange(RATE) / RATE
    sine = (0.1 * np.sin(2 * np.pi * 4000 * t)).astype(np.float32)
    tilted = apply(Recipe("eq_tilt", {"db_per_octave": 3.0, "pivot_hz": 1000.0}), sine, RATE)
    mid = slice(RATE // 4, 3 * RATE // 4)
    gain_db = 20 * np.log10(np.sqrt(np.mean(tilted[mid] ** 2)) / np.sqrt(np.mean(sine[mid] ** 2)))
    assert gain_db == pytest.approx(6.0, abs=0.1)


def test_pitch_shift_moves_a_sine_by_the_interval():
    rate = 22050
    t = np.arange(rate) / rate
    sine = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y = apply(Recipe("pitch_shift", {"semitones": 2}), sine, rate)
    assert y.size == sine.size
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    peak = np.fft.rfftfreq(y.size, 1 / rate)[np.argmax(spec)]
    assert peak == pytest.approx(440 * 2 ** (2 / 12), rel=0.01)


@pytest.mark.parametrize("text", ["time_stretch:rate=0.8", "time_stretch:rate=1.25", "pitch_shift:semitones=3",
                                  "pitch_shift:semitones=-5"])
def test_phase_vocoder_kinds_keep_the_level(text):
    def rms_db(v):
        m = v.size // 8
        return 10 * np.log10(np.mean(v[m:-m].astype(np.float64) ** 2))

    x = music(1.0)
    assert abs(rms_db(apply(Recipe.parse(text), x, RATE)) - rms_db(x)) < 0.5
    t = np.arange(RATE) / RATE
    sine = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # a slowed sine used to lose 13 dB
    assert abs(rms_db(apply(Recipe.parse(text), sine, RATE)) - rms_db(sine)) < 0.5


@pytest.mark.parametrize("kind,params,match", [
    ("fuzz", {}, "unknown distortion"),
    ("gain", {}, "parameter db is required"),
    ("gain", {"db": 3, "volume": 2}, "unknown parameter"),
    ("gain", {"db": "loud"}, "must be a number"),
    ("gain", {"db": float("nan")}, "finite"),
    ("white_noise", {"snr_db": 500}, r"must be in \[-30, 120\]"),
    ("lowpass", {"cutoff_hz": 0}, r"must be in \(0"),
    ("clip", {"threshold": 1.5}, "threshold"),
    ("reverb", {"rt60_s": 0.5, "wet": 2}, "wet"),
    ("mp3", {"bitrate_kbps": 64.5}, "whole number"),
    ("time_stretch", {"rate": 0}, "rate"),
    ("gain", {"db": True}, "must be a number"),
])
def test_bad_params_raise_clear_value_errors(kind, params, match):
    with pytest.raises(ValueError, match=match):
        Recipe(kind, params)


def test_bad_inputs_and_texts():
    with pytest.raises(ValueError, match="seed"):
        Recipe("gain", {"db": 1}, seed=-1)
    with pytest.raises(ValueError, match="expected kind:param=value"):
        Recipe.parse("gain:db")
    with pytest.raises(ValueError, match="mono"):
        apply(Recipe("gain", {"db": 1}), np.zeros((10, 2)), RATE)
    with pytest.raises(ValueError, match="empty"):
        apply(Recipe("gain", {"db": 1}), np.zeros(0), RATE)
    with pytest.raises(ValueError, match="silent"):
        apply(Recipe("white_noise", {"snr_db": 10}), np.zeros(100), RATE)
    with pytest.raises(ValueError, match="shorter than the signal"):
        apply(Recipe("time_shift", {"seconds": 2}), music(0.5), RATE)
    assert Recipe.parse("white_noise:snr_db=10,seed=4").seed == 4
    assert Recipe.parse(" lowpass : cutoff_hz = 3500 ").label == "lowpass:cutoff_hz=3500"


def test_render_stimulus_records_recipe_and_versions(tmp_path):
    ref = write_clip(tmp_path / "clips" / "tone.wav", seconds=0.5, rate=RATE, amp=0.5)
    lib_path = tmp_path / "lib.sqlite"
    with Library(lib_path) as lib:
        import_files(lib, [ref])
        clip = lib.clips()[0]
        r = Recipe.parse("white_noise:snr_db=20,seed=5")
        st = render_stimulus(lib, clip, r, tmp_path / "stim")
        assert st.path.endswith(".flac") and st.reference_hash == clip.content_hash
        assert st.recipe == r and st.info["versions"]["libsndfile"] and st.info["reference"]["clip_id"] == clip.id
        data, rate = sf.read(st.path, dtype="float32")
        assert rate == RATE
        expected = apply(r, sf.read(ref, dtype="float32")[0], RATE)
        assert np.abs(data - expected).max() < 2 ** -22  # 24-bit FLAC
        # Deterministic and recorded once: the same request returns the same row.
        assert render_stimulus(lib, clip, r, tmp_path / "stim").id == st.id
        loud = render_stimulus(lib, clip, Recipe("gain", {"db": 12}), tmp_path / "stim")
        assert loud.path.endswith(".wav")  # above full scale: float WAV, nothing clipped
        assert sf.read(loud.path)[0].max() > 1.5
        # A file outside the library works too.
        other = write_clip(tmp_path / "elsewhere.wav", seconds=0.3, rate=22050)
        st2 = render_stimulus(lib, other, Recipe("lowpass", {"cutoff_hz": 3500}), tmp_path / "stim")
        assert st2.info["reference"]["clip_id"] is None
        assert [s.id for s in list_stimuli(lib)] == [st.id, loud.id, st2.id]


def test_stimuli_command(tmp_path, capsys):
    from perceptlab.cli import main

    ref = write_clip(tmp_path / "ref.wav", seconds=0.4, rate=22050)
    lib = tmp_path / "lib.sqlite"
    assert main(["stimuli", str(ref), "--recipe", "lowpass:cutoff_hz=3500", "--recipe", "white_noise:snr_db=10",
                 "--seed", "7", "--out", str(tmp_path / "out"), "--library", str(lib), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["label"] for s in out["stimuli"]] == ["lowpass:cutoff_hz=3500", "white_noise:snr_db=10,seed=7"]
    assert out["reference"]["path"] == str(ref) and all((tmp_path / "out" / s["path"]).exists() for s in out["stimuli"])
    assert main(["stimuli", str(ref), "--recipe", "lowpass:cutoff=3500", "--out", str(tmp_path / "out"),
                 "--library", str(lib)]) == 2
    assert "lowpass: unknown parameter(s) cutoff (allowed: cutoff_hz, transition_hz)" in capsys.readouterr().err
