"""The session dialog's rules, as plain functions of its choices (no widget needed)."""

from __future__ import annotations

from dataclasses import replace

from perceptlab.listening.designs import MUSHRA, MUSHRA_MAX_CONDITIONS, TRIPLET
from perceptlab.qt.session_checks import ALL, CHOSEN, LABEL, FormState, capacity_text, form_errors

BASE = FormState(design=TRIPLET, listener="ann", clip_mode=ALL, label=None, clip_ids=None, n_clips=9,
                 recipes=(), n=20, source="clips", references=0, active=False, n_metrics=3, anchors=True,
                 stimuli_dir="")


def test_a_valid_triplet_plan_has_no_errors_and_says_what_it_can_give():
    assert form_errors(BASE) == []
    assert capacity_text(BASE) == "9 clips give at most 252 distinct triplets"


def test_each_error_names_the_field_and_the_reason(tmp_path):
    assert form_errors(replace(BASE, listener="")) == [
        "Listener: enter the listener's name or code (the answers are stored under it)"]
    assert form_errors(replace(BASE, n=300)) == ["Trials: 300 asked, but the library's 9 clips give at most 252 triplets"]
    assert form_errors(replace(BASE, clip_mode=LABEL, label="low", clip_ids=(1, 2), n_clips=2)) == [
        "Clips: triplets need at least 3 clips, the 2 clips labelled low are too few"]
    assert form_errors(replace(BASE, clip_mode=CHOSEN, clip_ids=(), n_clips=0)) == [
        "Clips: none checked; check some clips, or use all clips or a label"]
    assert form_errors(replace(BASE, active=True, n_metrics=1)) == [
        "Metrics: active selection compares at least 2 metrics, 1 checked"]
    f = tmp_path / "a-file"
    f.write_text("x")
    assert form_errors(replace(BASE, stimuli_dir=str(f))) == [f"Stimuli folder: {f} is a file, not a folder"]


def test_stimuli_triplets_count_distinct_distortions_and_references():
    s = replace(BASE, source="stimuli", n=10,
                recipes=("identity", "white_noise:snr_db=10", "white_noise:snr_db=10", "lowpass:cutoff_hz=3500"))
    # 2 distinct distortions (identity and the repeat do not count); 10 trials: max(2, ceil(10 / 5)) = 2 references.
    assert capacity_text(s) == "2 references × 1 pairs of the 2 recipes: at most 2 triplets"
    assert form_errors(s) == ["Trials: 10 asked, but 2 references × 1 pairs of the 2 recipes give at most 2 triplets"]
    assert form_errors(replace(s, recipes=("identity", "white_noise:snr_db=10"))) == [
        "Recipes: triplets of stimuli need at least 2 distortions, 1 checked"]
    chosen = replace(s, clip_mode=CHOSEN, clip_ids=(1, 2, 3, 4, 5), n_clips=5, n=5)
    assert capacity_text(chosen) == "5 references × 1 pairs of the 2 recipes: at most 5 triplets"
    assert form_errors(chosen) == []


def test_mushra_counts_the_anchors_once_and_keeps_to_the_limit():
    s = replace(BASE, design=MUSHRA, n=4, recipes=("lowpass:cutoff_hz=3500", "mp3:bitrate_kbps=32"))
    # The 3.5 kHz low-pass is the low anchor: hidden reference + 2 anchors + 1 test condition.
    assert capacity_text(s) == "4 conditions per item: hidden reference, 2 anchors, 1 recipes"
    assert form_errors(s) == []
    assert form_errors(replace(s, anchors=False, recipes=())) == [
        "Recipes: check at least one recipe or the anchors; the hidden reference alone is nothing to rate"]
    many = tuple(f"white_noise:snr_db={db}" for db in range(5, 5 + MUSHRA_MAX_CONDITIONS))
    assert form_errors(replace(s, recipes=many)) == [
        f"Recipes: {1 + 2 + len(many)} conditions per item (hidden reference, 2 anchors, {len(many)} test "
        f"conditions); BS.1534-3 allows at most {MUSHRA_MAX_CONDITIONS}"]
    assert form_errors(replace(s, n=20)) == ["Items: 20 asked, but the library has 9 clips to use as references"]
