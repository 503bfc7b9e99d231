"""The "New listening session" dialog: every field of a session plan, checked as it is typed.

The dialog edits exactly the fields of :class:`perceptlab.listening.create.TripletPlan`
and :class:`~perceptlab.listening.create.MushraPlan` (what ``perceptlab listen
create`` takes on the command line); :meth:`QtSessionDialog.plan` builds the
dataclass, :meth:`QtSessionDialog.set_plan` fills the dialog from one (so a
second listener gets the same items). Fields the back end would ignore for the
current choices are disabled, not hidden, and say why in their tooltip; what
stops the choices from making a session is listed under the form
(:mod:`perceptlab.qt.session_checks`).

"Preview trial" renders one item of the plan in a worker thread and plays its
sounds (:class:`perceptlab.qt.session_preview.QtSessionPreview`).
"""

from __future__ import annotations

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

from perceptlab.audio.distort import Recipe
from perceptlab.audio.playback import PlaybackEngine
from perceptlab.listening.create import MushraPlan, TripletPlan
from perceptlab.listening.designs import (
    DEFAULT_MUSHRA_RECIPES,
    DEFAULT_TRIPLET_RECIPES,
    MUSHRA,
    TRIPLET,
)
from perceptlab.metric_names import IMAGE_METRICS
from perceptlab.qt.session_checks import ALL, CHOSEN, LABEL, FormState, capacity_text, form_errors, recipe_key
from perceptlab.qt.session_preview import QtSessionPreview

#: Metrics offered for active triplet selection when the window has not listed its own: the
#: built-in image metrics, asked of the registry when the dialog opens.
FALLBACK_METRICS = IMAGE_METRICS


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
        self.preview_box = QtSessionPreview(self.library_path, engine or PlaybackEngine(sample_rate=sample_rate))
        self.engine = self.preview_box.engine

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

        # -- preview (its widgets, by the names the dialog has always had) ----------------------------
        self.preview_button = self.preview_box.button
        self.stop_button = self.preview_box.stop_button
        self.preview_list = self.preview_box.list
        self.preview_message = self.preview_box.message

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

        left = QVBoxLayout()
        left.addLayout(top)
        left.addWidget(clips, 1)
        middle = QVBoxLayout()
        middle.addWidget(self.items_box)
        middle.addWidget(order)
        middle.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(recipes, 1)
        right.addWidget(self.preview_box)
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
        self.preview_box.ready.connect(self.preview_ready)
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
        wanted = {recipe_key(r): r for r in plan.recipes}
        have = {recipe_key(self.recipe_list.item(i).text()) for i in range(self.recipe_list.count())}
        for key, text in wanted.items():
            if key not in have:
                self._add_recipe_item(text)
        for i in range(self.recipe_list.count()):
            it = self.recipe_list.item(i)
            it.setCheckState(Qt.Checked if recipe_key(it.text()) in wanted else Qt.Unchecked)
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

    # -- checking (the rules: perceptlab.qt.session_checks) -------------------------------------
    def form_state(self) -> FormState:
        """The choices the dialog shows now."""
        ids = self.chosen_clip_ids()
        return FormState(
            design=self.design(), listener=self.listener(), clip_mode=self.clip_mode_name(),
            label=self.label_box.currentData(), clip_ids=ids, n_clips=self.n_clips(),
            recipes=self.checked_recipes(), n=self.trials_spin.value(), source=self.source_box.currentData(),
            references=self.references_spin.value(), active=self.active_check.isChecked(),
            n_metrics=len(self.checked_metrics()), anchors=self.anchors_check.isChecked(),
            stimuli_dir=self.stimuli_edit.text().strip())

    def errors(self) -> list[str]:
        """What stops this plan from becoming a session, each naming the field and why."""
        return form_errors(self.form_state())

    def capacity(self) -> str:
        """What the current choices can give: distinct triplets, or conditions per MUSHRA item."""
        return capacity_text(self.form_state())

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
        keys = {recipe_key(r) for r in defaults}
        self.recipe_list.blockSignals(True)
        for i in range(self.recipe_list.count()):
            it = self.recipe_list.item(i)
            it.setCheckState(Qt.Checked if recipe_key(it.text()) in keys else Qt.Unchecked)
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
            if recipe_key(it.text()) == recipe.key:
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
        self.preview_box.start(self.design(), self.plan())
        return True

    def preview_busy(self) -> bool:
        return self.preview_box.busy()

    @property
    def preview_sounds(self) -> list[tuple[str, str]]:
        """(label, what it is) of each sound the preview rendered, the reference first."""
        return self.preview_box.sounds

    def play_preview(self, index: int) -> bool:
        """Hear preview sound ``index`` (0 = the reference); False, saying why, if it cannot play."""
        return self.preview_box.play(index)

    # -- closing ---------------------------------------------------------------------------------
    def accept(self) -> None:
        errors = self.errors()
        if errors:
            self.errors_label.setText("\n".join(errors))
            return
        super().accept()

    def done(self, result: int) -> None:
        self.preview_box.shutdown()
        super().done(result)
