"""The "New listening session" dialog: every field of a session plan, checked as it is typed.

The dialog edits exactly the fields of :class:`perceptlab.listening.create.TripletPlan`
and :class:`~perceptlab.listening.create.MushraPlan` (what ``perceptlab listen
create`` takes on the command line); :meth:`QtSessionDialog.plan` builds the
dataclass, :meth:`QtSessionDialog.set_plan` fills the dialog from one (so a
second listener gets the same items). Fields the back end would ignore for the
current choices are disabled, not hidden, and say why in their tooltip.

"Preview trial" renders one item of the plan in a worker thread (the stimuli
are kept: the session reuses them) and plays its sounds through a
:class:`~perceptlab.audio.playback.PlaybackEngine`; with no audio device the
preview says so and stays usable.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
)

from perceptlab.audio.distort import Recipe, anchor_recipes
from perceptlab.audio.playback import PlaybackEngine, PlaybackUnavailable
from perceptlab.listening.create import MushraPlan, TripletPlan
from perceptlab.listening.designs import (
    DEFAULT_MUSHRA_RECIPES,
    DEFAULT_TRIPLET_RECIPES,
    HIDDEN_REFERENCE,
    MUSHRA,
    MUSHRA_MAX_CONDITIONS,
    TRIPLET,
)
from perceptlab.metric_names import IMAGE_METRICS
from perceptlab.qt.workers import QtTask, QtTaskRunner

#: Metrics offered for active triplet selection when the window has not listed its own: the
#: built-in image metrics, asked of the registry when the dialog opens.
FALLBACK_METRICS = IMAGE_METRICS

ALL, LABEL, CHOSEN = "all", "label", "chosen"

_ROLE_NAMES = {"x": "X", "reference": "reference", HIDDEN_REFERENCE: "hidden reference",
               "low_anchor": "low anchor", "mid_anchor": "mid anchor", "condition": "condition",
               "candidate": "candidate"}


def _recipe_key(text: str) -> str:
    return Recipe.parse(text).key


def render_preview(library_path: str, design: str, plan, rate: int, *, progress=None, cancel=None) -> list:
    """Render one item of ``plan`` and decode its sounds (worker thread; its own library connection).

    Returns
    -------
    list of (str, str, numpy.ndarray or str)
        (label, what it is, the wave at ``rate`` or why it cannot be loaded),
        reference first.
    """
    from perceptlab.audio.decode import load as load_audio
    from perceptlab.library.store import Library
    from perceptlab.listening.create import preview_item

    from perceptlab.library.stimuli import get_stimulus

    with Library(library_path) as lib:
        item = preview_item(lib, design, plan, progress=progress, cancel=cancel)
        ref = item.x if design == TRIPLET else item.reference
        ref_name = ref["name"]
        if ref.get("stimulus_id") is not None:  # a render's file name spells its recipe: name the clip
            ref_name = get_stimulus(lib, ref["stimulus_id"]).info.get("reference", {}).get("name") or ref_name
    if design == TRIPLET:
        sounds = [("X", item.x), ("A", item.a), ("B", item.b)]
        describe = (lambda d: d["name"]) if item.source == "clips" else (
            lambda d: f"{ref_name} as is" if d["role"] == "x" else d["condition"])
    else:
        sounds = [("reference", item.reference)] + [(str(i), c) for i, c in enumerate(item.conditions, start=1)]

        def describe(d):
            role = _ROLE_NAMES.get(d["role"], d["role"])
            if d["role"] == "reference":
                return ref_name
            if d["role"] == HIDDEN_REFERENCE:
                return f"{role} ({ref_name})"
            return f"{role}: {d['condition']}"
    out = []
    for label, d in sounds:
        try:
            wave = load_audio(d["path"], rate)
        except Exception as exc:  # a stimulus file gone missing: listed, the others still play
            wave = str(exc)
        out.append((label, describe(d), wave))
    return out


class QtSessionDialog(QDialog):
    """Author a listening session: design, listener, clips, recipes, counts, seed, preview.

    Parameters
    ----------
    library : Library
        The open library (read on the GUI thread for the clip list only).
    metrics : list of str, optional
        Metric names offered for active selection (the window's registry).
    sample_rate : int
        Rate the preview decodes to (the listening screen's).
    engine : PlaybackEngine, optional
        What the preview plays through; by default a new engine at ``sample_rate``.

    Signals
    -------
    preview_ready(int)
        The number of sounds the preview rendered.
    """

    preview_ready = Signal(int)

    def __init__(self, library, parent=None, *, metrics=None, sample_rate: int = 22050,
                 engine: PlaybackEngine | None = None):
        super().__init__(parent)
        self.setWindowTitle("New listening session")
        self.library = library
        self.library_path = str(library.path)
        self.clips = [c for c in library.clips() if c.ok]
        self.engine = engine or PlaybackEngine(sample_rate=sample_rate)
        self.runner = QtTaskRunner(self, max_threads=1)
        self._preview_task: QtTask | None = None
        self.preview_sounds: list[tuple[str, str]] = []

        # -- design and listener --------------------------------------------------------
        self.design_box = QComboBox()
        self.design_box.addItem("Triplet: which of A and B is closer to X?", TRIPLET)
        self.design_box.addItem("MUSHRA: rate conditions 0-100 against a reference", MUSHRA)
        self.listener_edit = QLineEdit()
        self.listener_edit.setPlaceholderText("name or code of the listener (required)")

        # -- clips ----------------------------------------------------------------------
        self.all_radio = QRadioButton(f"All clips of the library ({len(self.clips)})")
        self.label_radio = QRadioButton("Clips with the label")
        self.chosen_radio = QRadioButton("The clips checked below")
        self.clip_mode = QButtonGroup(self)
        for i, r in enumerate((self.all_radio, self.label_radio, self.chosen_radio)):
            self.clip_mode.addButton(r, i)
        self.all_radio.setChecked(True)
        self.label_box = QComboBox()
        for lab in library.labels():
            n = sum(c.label == lab for c in self.clips)
            self.label_box.addItem(f"{lab} ({n})", lab)
        if self.label_box.count() == 0:
            self.label_radio.setEnabled(False)
            self.label_radio.setToolTip("no clip of the library has a label")
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search name or label…")
        self.search_edit.setClearButtonEnabled(True)
        self.clip_list = QListWidget()
        self.clip_list.setSelectionMode(QAbstractItemView.NoSelection)
        for c in self.clips:
            it = QListWidgetItem(f"{c.name}" + (f"  ·  {c.label}" if c.label else ""))
            it.setData(Qt.UserRole, c.id)
            it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
            it.setCheckState(Qt.Unchecked)
            it.setToolTip(c.path)
            self.clip_list.addItem(it)
        self.check_shown = QPushButton("Check shown")
        self.uncheck_all = QPushButton("Uncheck all")
        self.clip_count = QLabel("")

        # -- items ------------------------------------------------------------------------
        self.trials_spin = QSpinBox()
        self.trials_spin.setRange(1, 100000)
        self.trials_spin.setValue(TripletPlan.n_trials)
        self.source_box = QComboBox()
        self.source_box.addItem("library clips: X, A, B are three clips", "clips")
        self.source_box.addItem("stimuli: A, B are two distortions of X", "stimuli")
        self.catch_spin = QSpinBox()
        self.catch_spin.setRange(-1, 10000)
        self.catch_spin.setSpecialValueText("auto (10 % of the trials, at least 1)")
        self.catch_spin.setValue(-1)
        self.references_spin = QSpinBox()
        self.references_spin.setRange(0, 100000)
        self.references_spin.setSpecialValueText("auto (1 per 5 trials, at least 2)")
        self.references_spin.setValue(0)
        self.active_check = QCheckBox("Active: keep the trials on which the metrics disagree most")
        self.metric_list = QListWidget()
        self.metric_list.setSelectionMode(QAbstractItemView.NoSelection)
        self.metric_list.setFlow(QListWidget.LeftToRight)
        self.metric_list.setWrapping(True)
        self.metric_list.setMaximumHeight(52)
        checked = TripletPlan().metrics
        for m in (metrics or FALLBACK_METRICS):
            it = QListWidgetItem(m)
            it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
            it.setCheckState(Qt.Checked if m in checked else Qt.Unchecked)
            self.metric_list.addItem(it)
        self.pool_spin = QSpinBox()
        self.pool_spin.setRange(1, 1000)
        self.pool_spin.setValue(TripletPlan.pool_factor)
        self.pool_spin.setSuffix(" × trials")
        self.capacity_label = QLabel("")
        self.capacity_label.setStyleSheet("color: gray")
        self.capacity_label.setWordWrap(True)
        self.anchors_check = QCheckBox("3.5 kHz and 7 kHz low-pass anchors (BS.1534-3)")
        self.anchors_check.setChecked(MushraPlan.anchors)

        # -- recipes ----------------------------------------------------------------------------
        self.recipe_list = QListWidget()
        self.recipe_list.setSelectionMode(QAbstractItemView.NoSelection)
        for text in dict.fromkeys((*DEFAULT_TRIPLET_RECIPES, *DEFAULT_MUSHRA_RECIPES)):
            self._add_recipe_item(text)
        self.recipe_edit = QLineEdit()
        self.recipe_edit.setPlaceholderText("kind:param=value,…  e.g. mp3:bitrate_kbps=64")
        self.recipe_add = QPushButton("Add")
        self.recipe_error = QLabel("")
        self.recipe_error.setStyleSheet("color: #c0392b")
        self.recipe_error.setWordWrap(True)

        # -- order and rules -----------------------------------------------------------------------
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.must_play_check = QCheckBox("Every sound must be played before answering")
        self.shuffle_check = QCheckBox("Shuffle trial order and sides for each listener")
        self.shuffle_check.setChecked(True)
        self.stimuli_edit = QLineEdit()
        self.stimuli_edit.setPlaceholderText(f"default: {Path(self.library_path).parent / 'stimuli'}")

        # -- preview ----------------------------------------------------------------------------------
        self.preview_button = QPushButton("Preview trial")
        self.stop_button = QPushButton("Stop")
        self.preview_list = QListWidget()
        self.preview_list.setMaximumHeight(160)
        self.preview_message = QLabel("Render one trial of this plan and hear it before creating the session.")
        self.preview_message.setWordWrap(True)
        self.preview_message.setStyleSheet("color: gray")

        self.errors_label = QLabel("")
        self.errors_label.setWordWrap(True)
        self.errors_label.setStyleSheet("color: #c0392b")
        self.buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.create_button = self.buttons.addButton("Create session", QDialogButtonBox.AcceptRole)

        self._lay_out()
        self._connect()
        self._on_design_changed()

    # -- layout ------------------------------------------------------------------------
    def _lay_out(self) -> None:
        top = QFormLayout()
        top.addRow("Design", self.design_box)
        top.addRow("Listener", self.listener_edit)

        clips = QGroupBox("Clips (triplet: drawn from; stimuli and MUSHRA: the references)")
        cl = QVBoxLayout(clips)
        cl.addWidget(self.all_radio)
        row = QHBoxLayout()
        row.addWidget(self.label_radio)
        row.addWidget(self.label_box, 1)
        cl.addLayout(row)
        cl.addWidget(self.chosen_radio)
        cl.addWidget(self.search_edit)
        cl.addWidget(self.clip_list, 1)
        row = QHBoxLayout()
        row.addWidget(self.check_shown)
        row.addWidget(self.uncheck_all)
        row.addStretch(1)
        row.addWidget(self.clip_count)
        cl.addLayout(row)

        self.items_box = QGroupBox("Trials")
        form = QFormLayout(self.items_box)
        self.trials_label = QLabel("Trials")
        form.addRow(self.trials_label, self.trials_spin)
        form.addRow("", self.capacity_label)
        self.source_label = QLabel("Source")
        form.addRow(self.source_label, self.source_box)
        self.catch_label = QLabel("Catch trials")
        form.addRow(self.catch_label, self.catch_spin)
        self.references_label = QLabel("References")
        form.addRow(self.references_label, self.references_spin)
        form.addRow(self.active_check)
        self.metrics_label = QLabel("Metrics")
        form.addRow(self.metrics_label, self.metric_list)
        self.pool_label = QLabel("Pool")
        form.addRow(self.pool_label, self.pool_spin)
        self.anchors_label = QLabel("Anchors")
        form.addRow(self.anchors_label, self.anchors_check)
        self.items_form = form

        recipes = QGroupBox("Stimulus recipes (distortions of the reference)")
        rl = QVBoxLayout(recipes)
        rl.addWidget(self.recipe_list, 1)
        row = QHBoxLayout()
        row.addWidget(self.recipe_edit, 1)
        row.addWidget(self.recipe_add)
        rl.addLayout(row)
        rl.addWidget(self.recipe_error)
        self.recipes_box = recipes

        order = QGroupBox("Order and rules")
        of = QFormLayout(order)
        of.addRow("Order seed", self.seed_spin)
        of.addRow(self.must_play_check)
        of.addRow(self.shuffle_check)
        of.addRow("Stimuli folder", self.stimuli_edit)

        preview = QGroupBox("Preview")
        pl = QVBoxLayout(preview)
        row = QHBoxLayout()
        row.addWidget(self.preview_button)
        row.addWidget(self.stop_button)
        row.addStretch(1)
        pl.addLayout(row)
        pl.addWidget(self.preview_list)
        pl.addWidget(self.preview_message)

        left = QVBoxLayout()
        left.addLayout(top)
        left.addWidget(clips, 1)
        middle = QVBoxLayout()
        middle.addWidget(self.items_box)
        middle.addWidget(order)
        middle.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(recipes, 1)
        right.addWidget(preview)
        cols = QHBoxLayout()
        cols.addLayout(left, 4)
        cols.addLayout(middle, 4)
        cols.addLayout(right, 4)
        lay = QVBoxLayout(self)
        lay.addLayout(cols, 1)
        lay.addWidget(self.errors_label)
        lay.addWidget(self.buttons)

    def _connect(self) -> None:
        self.design_box.currentIndexChanged.connect(self._on_design_changed)
        self.source_box.currentIndexChanged.connect(self._on_changed)
        for w in (self.listener_edit, self.search_edit, self.stimuli_edit):
            w.textChanged.connect(self._on_changed)
        self.search_edit.textChanged.connect(self._on_search)
        self.clip_mode.idToggled.connect(lambda *_: self._on_changed())
        self.label_box.currentIndexChanged.connect(self._on_label_chosen)
        for s in (self.trials_spin, self.catch_spin, self.references_spin, self.pool_spin, self.seed_spin):
            s.valueChanged.connect(self._on_changed)
        for c in (self.active_check, self.anchors_check, self.must_play_check, self.shuffle_check):
            c.toggled.connect(self._on_changed)
        for lst in (self.clip_list, self.metric_list, self.recipe_list):
            lst.itemChanged.connect(self._on_changed)
        self.clip_list.itemChanged.connect(self._on_clip_checked)
        self.check_shown.clicked.connect(lambda: self._check_clips(True))
        self.uncheck_all.clicked.connect(lambda: self._check_clips(False, shown_only=False))
        self.recipe_add.clicked.connect(self._on_add_recipe)
        self.recipe_edit.returnPressed.connect(self._on_add_recipe)
        self.preview_button.clicked.connect(self.preview)
        self.stop_button.clicked.connect(self.engine.stop)
        self.preview_list.itemClicked.connect(lambda it: self.play_preview(self.preview_list.row(it)))
        self.buttons.rejected.connect(self.reject)
        self.create_button.clicked.connect(self.accept)

    # -- fields ------------------------------------------------------------------------------
    def design(self) -> str:
        return self.design_box.currentData()

    def listener(self) -> str:
        return self.listener_edit.text().strip()

    def clip_mode_name(self) -> str:
        return (ALL, LABEL, CHOSEN)[self.clip_mode.checkedId()]

    def chosen_clip_ids(self) -> tuple[int, ...] | None:
        """The clips of the plan: None for the whole library, else their ids."""
        mode = self.clip_mode_name()
        if mode == ALL:
            return None
        if mode == LABEL:
            lab = self.label_box.currentData()
            return tuple(c.id for c in self.clips if c.label == lab)
        return tuple(self.clip_list.item(i).data(Qt.UserRole) for i in range(self.clip_list.count())
                     if self.clip_list.item(i).checkState() == Qt.Checked)

    def n_clips(self) -> int:
        ids = self.chosen_clip_ids()
        return len(self.clips) if ids is None else len(ids)

    def checked_recipes(self) -> tuple[str, ...]:
        return tuple(self.recipe_list.item(i).text() for i in range(self.recipe_list.count())
                     if self.recipe_list.item(i).checkState() == Qt.Checked)

    def checked_metrics(self) -> tuple[str, ...]:
        return tuple(self.metric_list.item(i).text() for i in range(self.metric_list.count())
                     if self.metric_list.item(i).checkState() == Qt.Checked)

    def plan(self) -> TripletPlan | MushraPlan:
        """The plan the dialog shows, field for field."""
        stimuli_dir = self.stimuli_edit.text().strip() or None
        if self.design() == TRIPLET:
            return TripletPlan(
                n_trials=self.trials_spin.value(), source=self.source_box.currentData(),
                active=self.active_check.isChecked(), pool_factor=self.pool_spin.value(),
                metrics=self.checked_metrics(),
                n_catch=None if self.catch_spin.value() < 0 else self.catch_spin.value(),
                recipes=self.checked_recipes(), clip_ids=self.chosen_clip_ids(),
                n_references=self.references_spin.value() or None, stimuli_dir=stimuli_dir,
                seed=self.seed_spin.value(), must_play=self.must_play_check.isChecked(),
                shuffle=self.shuffle_check.isChecked())
        return MushraPlan(
            n_items=self.trials_spin.value(), clip_ids=self.chosen_clip_ids(), recipes=self.checked_recipes(),
            anchors=self.anchors_check.isChecked(), must_play=self.must_play_check.isChecked(),
            stimuli_dir=stimuli_dir, seed=self.seed_spin.value(), shuffle=self.shuffle_check.isChecked())

    def set_plan(self, design: str, plan, listener: str | None = None) -> None:
        """Fill the dialog from ``plan`` (e.g. a stored session's, for the next listener)."""
        self.design_box.setCurrentIndex(self.design_box.findData(design))
        if listener is not None:
            self.listener_edit.setText(listener)
        ids = plan.clip_ids
        if ids:
            ids = set(ids)
            for i in range(self.clip_list.count()):
                it = self.clip_list.item(i)
                it.setCheckState(Qt.Checked if it.data(Qt.UserRole) in ids else Qt.Unchecked)
            self.chosen_radio.setChecked(True)
        else:
            self.all_radio.setChecked(True)
        wanted = {_recipe_key(r): r for r in plan.recipes}
        have = {_recipe_key(self.recipe_list.item(i).text()) for i in range(self.recipe_list.count())}
        for key, text in wanted.items():
            if key not in have:
                self._add_recipe_item(text)
        for i in range(self.recipe_list.count()):
            it = self.recipe_list.item(i)
            it.setCheckState(Qt.Checked if _recipe_key(it.text()) in wanted else Qt.Unchecked)
        self.seed_spin.setValue(int(plan.seed))
        self.must_play_check.setChecked(bool(plan.must_play))
        self.shuffle_check.setChecked(bool(plan.shuffle))
        self.stimuli_edit.setText(plan.stimuli_dir or "")
        if design == TRIPLET:
            self.trials_spin.setValue(plan.n_trials)
            self.source_box.setCurrentIndex(self.source_box.findData(plan.source))
            self.active_check.setChecked(bool(plan.active))
            self.pool_spin.setValue(plan.pool_factor)
            self.catch_spin.setValue(-1 if plan.n_catch is None else int(plan.n_catch))
            self.references_spin.setValue(plan.n_references or 0)
            for i in range(self.metric_list.count()):
                it = self.metric_list.item(i)
                it.setCheckState(Qt.Checked if it.text() in plan.metrics else Qt.Unchecked)
        else:
            self.trials_spin.setValue(plan.n_items)
            self.anchors_check.setChecked(bool(plan.anchors))
        self._on_changed()

    # -- checking ------------------------------------------------------------------------------
    def errors(self) -> list[str]:
        """What stops this plan from becoming a session, each naming the field and why."""
        out = []
        if not self.listener():
            out.append("Listener: enter the listener's name or code (the answers are stored under it)")
        ids = self.chosen_clip_ids()
        m = self.n_clips()
        mode = self.clip_mode_name()
        which = {ALL: f"the library's {m} clips", LABEL: f"the {m} clips labelled {self.label_box.currentData()}",
                 CHOSEN: f"the chosen {m} clips"}[mode]
        if mode == CHOSEN and not ids:
            out.append("Clips: none checked; check some clips, or use all clips or a label")
        elif m == 0:
            out.append("Clips: the library has no playable clips; import some first")
        recipes = self.checked_recipes()
        n = self.trials_spin.value()
        if self.design() == TRIPLET:
            if self.source_box.currentData() == "clips":
                if 0 < m < 3:
                    out.append(f"Clips: triplets need at least 3 clips, {which} are too few")
                elif m >= 3:
                    possible = m * (m - 1) * (m - 2) // 2
                    if n > possible:
                        out.append(f"Trials: {n} asked, but {which} give at most {possible} triplets")
            else:
                r = len({_recipe_key(t) for t in recipes if Recipe.parse(t).kind != "identity"})
                if r < 2:
                    out.append(f"Recipes: triplets of stimuli need at least 2 distortions, {r} checked")
                elif m > 0:
                    refs = m if ids else min(m, self.references_spin.value() or max(2, math.ceil(n / 5)))
                    pairs = r * (r - 1) // 2
                    if n > refs * pairs:
                        out.append(f"Trials: {n} asked, but {refs} reference{'s' if refs != 1 else ''} × "
                                   f"{pairs} pairs of the {r} recipes give at most {refs * pairs} triplets")
            if self.active_check.isChecked() and len(self.checked_metrics()) < 2:
                out.append(f"Metrics: active selection compares at least 2 metrics, "
                           f"{len(self.checked_metrics())} checked")
        else:
            anchor_keys = {a.key for a in anchor_recipes()} if self.anchors_check.isChecked() else set()
            tests = {_recipe_key(t) for t in recipes
                     if Recipe.parse(t).kind != "identity" and _recipe_key(t) not in anchor_keys}
            n_anchors = 2 if self.anchors_check.isChecked() else 0
            conds = 1 + n_anchors + len(tests)
            if conds > MUSHRA_MAX_CONDITIONS:
                out.append(f"Recipes: {conds} conditions per item (hidden reference, {n_anchors} anchors, "
                           f"{len(tests)} test conditions); BS.1534-3 allows at most {MUSHRA_MAX_CONDITIONS}")
            if conds < 2:
                out.append("Recipes: check at least one recipe or the anchors; the hidden reference alone "
                           "is nothing to rate")
            if ids is None and m > 0 and n > m:
                out.append(f"Items: {n} asked, but the library has {m} clips to use as references")
        d = self.stimuli_edit.text().strip()
        if d and Path(d).expanduser().exists() and not Path(d).expanduser().is_dir():
            out.append(f"Stimuli folder: {d} is a file, not a folder")
        return out

    def capacity(self) -> str:
        """What the current choices can give: distinct triplets, or conditions per MUSHRA item."""
        m = self.n_clips()
        recipes = self.checked_recipes()
        if self.design() == TRIPLET:
            if self.source_box.currentData() == "clips":
                return f"{m} clips give at most {m * (m - 1) * (m - 2) // 2 if m >= 3 else 0} distinct triplets"
            r = len({_recipe_key(t) for t in recipes if Recipe.parse(t).kind != "identity"})
            n = self.trials_spin.value()
            refs = m if self.chosen_clip_ids() else min(m, self.references_spin.value() or max(2, math.ceil(n / 5)))
            pairs = r * (r - 1) // 2
            return (f"{refs} reference{'s' if refs != 1 else ''} × {pairs} pairs of the {r} recipes: "
                    f"at most {refs * pairs} triplets")
        anchor_keys = {a.key for a in anchor_recipes()} if self.anchors_check.isChecked() else set()
        tests = {_recipe_key(t) for t in recipes
                 if Recipe.parse(t).kind != "identity" and _recipe_key(t) not in anchor_keys}
        n_anchors = 2 if self.anchors_check.isChecked() else 0
        return (f"{1 + n_anchors + len(tests)} conditions per item: hidden reference, {n_anchors} anchors, "
                f"{len(tests)} recipes")

    def _on_changed(self, *_args) -> None:
        triplet = self.design() == TRIPLET
        stimuli = triplet and self.source_box.currentData() == "stimuli"
        ids = self.chosen_clip_ids()
        active = triplet and self.active_check.isChecked()
        self.trials_label.setText("Trials" if triplet else "Items")
        self.trials_spin.setToolTip("scored trials; catch trials come on top" if triplet else
                                    "items (one reference each), drawn at random from the library")
        # MUSHRA with chosen references: one item per reference, the count follows the choice.
        self.trials_spin.setEnabled(triplet or ids is None)
        if not triplet and ids is not None:
            self.trials_spin.blockSignals(True)
            self.trials_spin.setValue(max(1, len(ids)))
            self.trials_spin.blockSignals(False)
        for w in (self.source_label, self.source_box, self.catch_label, self.catch_spin, self.active_check):
            w.setEnabled(triplet)
        for w in (self.references_label, self.references_spin):
            w.setEnabled(stimuli and ids is None)
            w.setToolTip("" if stimuli and ids is None else
                         "only for stimuli triplets drawn from the whole library; chosen clips are the references")
        for w in (self.metrics_label, self.metric_list):
            w.setEnabled(active)
        for w in (self.pool_label, self.pool_spin):
            w.setEnabled(active and not stimuli)
            w.setToolTip("active selection picks from pool × trials random triplets" if not stimuli else
                         "stimuli triplets: the active mode scores every (reference, pair)")
        for w in (self.anchors_label, self.anchors_check):
            w.setEnabled(not triplet)
        self.recipes_box.setEnabled(not triplet or stimuli)
        self.recipes_box.setToolTip("" if not triplet or stimuli else "triplets of library clips use no recipes")
        self.label_box.setEnabled(self.clip_mode_name() == LABEL)
        self.clip_count.setText(f"{self.n_clips()} of {len(self.clips)} clips")
        self.capacity_label.setText(self.capacity())
        errors = self.errors()
        self.errors_label.setText("\n".join(errors))
        self.create_button.setEnabled(not errors)

    def _on_design_changed(self, *_args) -> None:
        triplet = self.design() == TRIPLET
        defaults = DEFAULT_TRIPLET_RECIPES if triplet else DEFAULT_MUSHRA_RECIPES
        keys = {_recipe_key(r) for r in defaults}
        self.recipe_list.blockSignals(True)
        for i in range(self.recipe_list.count()):
            it = self.recipe_list.item(i)
            it.setCheckState(Qt.Checked if _recipe_key(it.text()) in keys else Qt.Unchecked)
        self.recipe_list.blockSignals(False)
        self.trials_spin.setValue(TripletPlan.n_trials if triplet else MushraPlan.n_items)
        self.must_play_check.setChecked(TripletPlan.must_play if triplet else MushraPlan.must_play)
        self._on_changed()

    def _on_search(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.clip_list.count()):
            it = self.clip_list.item(i)
            it.setHidden(bool(needle) and needle not in it.text().lower())

    def _on_label_chosen(self, *_args) -> None:
        self.label_radio.setChecked(True)
        self._on_changed()

    def _on_clip_checked(self, *_args) -> None:
        if not self.chosen_radio.isChecked():
            self.chosen_radio.setChecked(True)

    def _check_clips(self, on: bool, shown_only: bool = True) -> None:
        self.clip_list.blockSignals(True)
        for i in range(self.clip_list.count()):
            it = self.clip_list.item(i)
            if not shown_only or not it.isHidden():
                it.setCheckState(Qt.Checked if on else Qt.Unchecked)
        self.clip_list.blockSignals(False)
        if on:
            self.chosen_radio.setChecked(True)
        self._on_changed()

    def _add_recipe_item(self, text: str) -> QListWidgetItem:
        it = QListWidgetItem(text)
        it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
        it.setCheckState(Qt.Unchecked)
        self.recipe_list.addItem(it)
        return it

    def _on_add_recipe(self) -> None:
        text = self.recipe_edit.text().strip()
        if not text:
            return
        try:
            recipe = Recipe.parse(text)
        except ValueError as exc:
            self.recipe_error.setText(f"Recipe {text!r}: {exc}")
            return
        self.recipe_error.setText("")
        for i in range(self.recipe_list.count()):
            it = self.recipe_list.item(i)
            if _recipe_key(it.text()) == recipe.key:
                it.setCheckState(Qt.Checked)
                break
        else:
            self._add_recipe_item(text).setCheckState(Qt.Checked)
        self.recipe_edit.clear()
        self._on_changed()

    # -- preview ---------------------------------------------------------------------------------
    def preview(self) -> bool:
        """Render one trial of the plan in the background; False (and why) if the plan is not valid."""
        errors = [e for e in self.errors() if not e.startswith("Listener:")]
        if errors:
            self.preview_message.setText("Cannot preview: " + errors[0])
            return False
        if self._preview_task is not None:
            self._preview_task.cancel()
        self.engine.clear()
        self.preview_list.clear()
        self.preview_sounds = []
        self.preview_message.setText("Rendering one trial…")
        task = QtTask(render_preview, self.library_path, self.design(), self.plan(), self.engine.sample_rate)
        task.signals.finished.connect(lambda res, t=task: self._on_preview_ready(t, res))
        task.signals.failed.connect(lambda msg, _tb, t=task: self._on_preview_failed(t, msg))
        task.signals.progress.connect(
            lambda done, total: self.preview_message.setText(f"Rendering one trial… {done}/{total}"))
        self._preview_task = task
        self.runner.start(task)
        return True

    def preview_busy(self) -> bool:
        return self._preview_task is not None

    def _on_preview_failed(self, task, message: str) -> None:
        if task is not self._preview_task:
            return
        self._preview_task = None
        self.preview_message.setText(f"Cannot preview: {message}")

    def _on_preview_ready(self, task, sounds: list) -> None:
        if task is not self._preview_task:
            return
        self._preview_task = None
        failed = []
        for i, (label, what, wave) in enumerate(sounds):
            key = "0" if i == 0 else str(i)
            it = QListWidgetItem(f"[{key}] {label}: {what}")
            self.preview_list.addItem(it)
            self.preview_sounds.append((label, what))
            if isinstance(wave, str):
                failed.append(f"{label}: {wave}")
                it.setFlags(it.flags() & ~Qt.ItemIsEnabled)
            else:
                self.engine.load(label, wave)
        text = f"{len(sounds)} sounds rendered; click one to hear it (switching keeps the position)."
        if failed:
            text += " Cannot load " + "; ".join(failed)
        self.preview_message.setText(text)
        self.preview_ready.emit(len(sounds))

    def play_preview(self, index: int) -> bool:
        """Hear preview sound ``index`` (0 = the reference); False, saying why, if it cannot play."""
        if not 0 <= index < len(self.preview_sounds):
            return False
        label = self.preview_sounds[index][0]
        if not self.engine.has(label):
            return False
        was_playing = self.engine.is_playing
        self.engine.select(label)
        if was_playing:
            return True
        try:
            self.engine.play()
        except PlaybackUnavailable as exc:
            self.preview_message.setText(f"No audio output, so the preview cannot be heard here: {exc}. "
                                         f"The {len(self.preview_sounds)} sounds are rendered; the session "
                                         "will use them.")
            return False
        return True

    # -- closing ---------------------------------------------------------------------------------
    def accept(self) -> None:
        errors = self.errors()
        if errors:
            self.errors_label.setText("\n".join(errors))
            return
        super().accept()

    def done(self, result: int) -> None:
        self.engine.close()
        self.runner.shutdown(5000)
        super().done(result)
