"""One item of a plan, rendered before the session exists; the session reuses its stimuli."""

from __future__ import annotations

import pytest

from perceptlab.library.stimuli import list_stimuli
from perceptlab.library.store import Library
from perceptlab.listening.create import MushraPlan, TripletPlan, create_session, preview_item
from perceptlab.listening.designs import MushraItem, TripletItem


def test_mushra_preview_is_the_first_reference_and_the_session_reuses_its_renders(clip_library):
    with Library(clip_library) as lib:
        ids = tuple(c.id for c in lib.clips(label="mid"))
        plan = MushraPlan(clip_ids=ids, recipes=("white_noise:snr_db=15",), seed=2)
        item = preview_item(lib, "mushra", plan)
        assert isinstance(item, MushraItem)
        assert item.reference["path"] and len(item.conditions) == 4  # hidden reference, 2 anchors, 1 recipe
        assert {c["role"] for c in item.conditions} == {"hidden_reference", "low_anchor", "mid_anchor", "condition"}
        rendered = len(list_stimuli(lib))
        assert rendered == 4  # identity, 2 anchors, 1 recipe: for the first reference only
        session = create_session(lib, "mushra", "ivy", plan)
        assert session.n_trials == len(ids)
        # The other references are rendered now; the preview's four are reused (no second copy).
        assert len(list_stimuli(lib)) == 4 * len(ids)


def test_triplet_preview_skips_active_selection_and_catch_trials(clip_library):
    with Library(clip_library) as lib:
        plan = TripletPlan(n_trials=6, active=True, metrics=("mse", "nlpd"), n_catch=3, seed=4)
        item = preview_item(lib, "triplet", plan)
        assert isinstance(item, TripletItem) and not item.catch and item.score is None
        assert len({item.x["clip_id"], item.a["clip_id"], item.b["clip_id"]}) == 3
        stim = preview_item(lib, "triplet", TripletPlan(source="stimuli", recipes=("white_noise:snr_db=10",
                                                                                  "lowpass:cutoff_hz=3000")))
        assert stim.x["condition"] == "reference"
        assert {stim.a["condition"], stim.b["condition"]} == {"white_noise:snr_db=10,seed=0", "lowpass:cutoff_hz=3000"}


def test_preview_of_an_unknown_design_says_which():
    with pytest.raises(ValueError, match="unknown design 'abx'"):
        preview_item(None, "abx")


def test_preview_of_a_random_draw_is_one_of_the_sessions_items(clip_library):
    with Library(clip_library) as lib:
        plan = MushraPlan(n_items=3, recipes=("white_noise:snr_db=15",), seed=9)
        item = preview_item(lib, "mushra", plan)
        session = create_session(lib, "mushra", "joy", plan)
        refs = {t.spec["reference"]["content_hash"] for t in session.answered_trials(include_unanswered=True)}
        assert item.reference["content_hash"] in refs
        plan = TripletPlan(n_trials=5, seed=3, shuffle=False, n_catch=0)
        item = preview_item(lib, "triplet", plan)
        first = create_session(lib, "triplet", "joy", plan).spec(0)
        assert [item.x["clip_id"], item.a["clip_id"], item.b["clip_id"]] == \
            [first["x"]["clip_id"], first["a"]["clip_id"], first["b"]["clip_id"]]
