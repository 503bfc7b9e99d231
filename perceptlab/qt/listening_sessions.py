"""The listening screen's sessions: the session box, opening and resuming, creating, the completion screen.

:class:`ListeningSessionsMixin` holds the methods of
:class:`~perceptlab.qt.listening_view.QtListeningView` that list a library's
sessions, open one at its first unanswered trial, build a new one in a worker
(from the session-authoring dialog, or the open session's plan for the next
listener) and show the summary of a finished one.
"""

from __future__ import annotations

import html
import shlex

from perceptlab.library.store import Library
from perceptlab.qt.workers import QtTask


def _create_session_in_worker(library_path: str, design: str, listener: str, plan, *,
                              progress=None, cancel=None) -> int:
    """Create a session on its own library connection (worker thread); returns its id."""
    from perceptlab.listening.create import create_session

    with Library(library_path) as lib:
        try:
            return create_session(lib, design, listener, plan, progress=progress, cancel=cancel).id
        except KeyError as exc:  # an unknown clip id: its message, without KeyError's quotes
            raise ValueError(exc.args[0] if exc.args else str(exc)) from None


class ListeningSessionsMixin:
    """Sessions of :class:`~perceptlab.qt.listening_view.QtListeningView`."""

    # -- sessions -------------------------------------------------------------------------
    def set_library(self, path: str | None) -> None:
        if self.library is not None:
            self.library.close()
        self.library_path = path
        self.library = Library(path) if path else None
        self.session = None
        self._clear_trial()  # nothing of another library's session stays on screen
        self.summary.hide()
        self.commands.hide()
        self.progress.reset()
        self.title.setText("Open or create a listening session")
        self.refresh_sessions()

    def refresh_sessions(self) -> None:
        from perceptlab.listening.session import list_sessions

        self.session_box.clear()
        if self.library is None:
            return
        for info in list_sessions(self.library):
            self.session_box.addItem(self._session_text(info), info.id)
        self._select_session_item()

    @staticmethod
    def _session_text(info) -> str:
        return (f"#{info.id} {info.design} · {info.listener} · {info.status} · "
                f"{info.n_answered}/{info.n_trials}")

    def _select_session_item(self) -> None:
        """Point the session box at the open session."""
        if self.session is None:
            return
        i = self.session_box.findData(self.session.id)
        if i >= 0:
            self.session_box.setCurrentIndex(i)

    def _update_session_item(self) -> None:
        """Rewrite the open session's entry (answered count, status) after an answer."""
        if self.session is None:
            return
        i = self.session_box.findData(self.session.id)
        if i < 0:
            self.refresh_sessions()
            return
        self.session_box.setItemText(i, self._session_text(self.session.info()))
        self.session_box.setCurrentIndex(i)

    def open_session(self, session_id: int) -> bool:
        """Open a session at its first unanswered trial (resume)."""
        from perceptlab.listening.session import Session

        self.engine.stop()
        self.session = Session.open(self.library, session_id)
        self._select_session_item()
        pos = self.session.next_position()
        if pos is None:
            self._show_summary()
            return False
        self.show_trial(pos)
        return True

    def create_session(self, design: str, listener: str, **plan) -> int:
        """Create a session from the library (see :mod:`perceptlab.listening.create`) and open it."""
        from perceptlab.listening.create import MushraPlan, TripletPlan, create_session

        plan_obj = (TripletPlan if design == "triplet" else MushraPlan)(**plan)
        session = create_session(self.library, design, listener, plan_obj)
        self.refresh_sessions()
        self.open_session(session.id)
        return session.id

    # -- the completion screen ----------------------------------------------------------------
    def summary_text(self) -> str:
        """What the completion screen says about the open session (rich text)."""
        s = self.session
        trials = s.answered_trials(include_unanswered=True)
        answers = [t for t in trials if t.answer is not None]
        rt = sum(float(t.answer.get("rt_ms", 0.0)) for t in answers) / 1000.0
        minutes, seconds = divmod(int(round(rt)), 60)
        took = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"

        def count(n, word):
            return f"{n} {word}" + ("" if n == 1 else "s")

        lines = [f"{count(len(answers), 'answer')} to {count(len(trials), 'trial')}, {took} of listening "
                 "(the sum of the time spent on each trial)."]
        if s.design == "triplet":
            catch = [t for t in answers if t.spec.get("catch")]
            if catch:
                right = sum(t.answer.get("choice") == t.spec.get("expected") for t in catch)
                lines.append(f"{count(len(catch), 'catch trial')} "
                             f"(the copy of X among A and B): {right} picked correctly.")
            else:
                lines.append("No catch trials in this session.")
        else:
            low = 0
            for t in answers:
                hidden = [c["label"] for c in t.spec.get("conditions", []) if c.get("role") == "hidden_reference"]
                low += any(t.answer["scores"].get(lab, 100.0) < 90 for lab in hidden)
            lines.append(f"Hidden reference rated below 90 on {low} of {len(answers)} items "
                         "(BS.1534 post-screening excludes a listener above 15 %).")
        return ("".join(f"<p>{html.escape(line)}</p>" for line in lines)
                + "<p><b>Next</b>: open the <b>Agreement tab</b> to see how well each metric agrees with "
                  "these answers, or run the commands below. For another listener, <b>New session…</b> "
                  "starts from this session's plan and seed: the items stay the same, their order changes.</p>")

    def summary_commands(self) -> str:
        """The command lines that analyse and export the open session."""
        lib = shlex.quote(str(self.library.path))
        return (f"perceptlab agreement --session {self.session.id} --library {lib}\n"
                f"perceptlab listen export {self.session.id} --out answers.csv --library {lib}")

    def _show_summary(self) -> None:
        """The completion screen of the open (fully answered) session."""
        self._clear_trial()
        s = self.session
        self.progress.setRange(0, max(1, s.n_trials))
        self.progress.setValue(s.n_trials)
        self.progress.setFormat(f"{s.n_trials} of {s.n_trials} answered")
        self.title.setText(f"Session #{s.id} ({s.design}) · listener {s.listener} · complete: thank you!")
        self.summary.setText(self.summary_text())
        self.summary.show()
        self.commands.setPlainText(self.summary_commands())
        self.commands.show()

    # -- buttons ---------------------------------------------------------------------------------
    def _on_open_clicked(self) -> None:
        sid = self.session_box.currentData()
        if sid is not None:
            self.open_session(int(sid))

    def _on_new_clicked(self) -> None:
        self.new_session_dialog()

    def new_session_dialog(self):
        """Open the session-authoring dialog (window-modal); accepting it creates the session."""
        from perceptlab.qt.session_dialog import QtSessionDialog

        if self.library is None:
            self.message.setText("Open a library first: sessions are stored in it")
            return None
        self.engine.pause()
        metrics = list(getattr(self.window(), "metric_names", None) or []) or None
        dlg = QtSessionDialog(self.library, self, metrics=metrics, sample_rate=self.engine.sample_rate)
        if self.session is not None:
            # The next listener of the same test: the open session's plan, a new name.
            from perceptlab.listening.create import MushraPlan, TripletPlan

            stored = dict(self.session.config.get("plan") or {})
            cls = TripletPlan if self.session.design == "triplet" else MushraPlan
            try:
                plan = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
                dlg.set_plan(self.session.design, plan)
            except (TypeError, ValueError):
                pass  # a plan stored by an older version: the dialog keeps its defaults
        dlg.accepted.connect(lambda d=dlg: self.create_from_plan(d.design(), d.listener(), d.plan()))
        dlg.finished.connect(dlg.deleteLater)
        self.session_dialog = dlg
        dlg.open()
        return dlg

    def create_from_plan(self, design: str, listener: str, plan) -> QtTask:
        """Build the session in a worker (rendering stimuli can take a while), then open it."""
        self.new_button.setEnabled(False)
        self.message.setText("")
        self.title.setText(f"Preparing a {design} session for {listener}…")
        task = QtTask(_create_session_in_worker, self.library_path, design, listener, plan)
        task.signals.progress.connect(
            lambda done, total: self.title.setText(f"Preparing a {design} session for {listener}… "
                                                   f"{done}/{total} stimuli"))
        task.signals.finished.connect(self._on_session_created)
        task.signals.failed.connect(self._on_session_failed)
        task.signals.cancelled.connect(lambda: self.new_button.setEnabled(True))
        self.creating = task
        return self.runner.start(task)

    def _on_session_created(self, session_id: int) -> None:
        self.creating = None
        self.new_button.setEnabled(True)
        self.refresh_sessions()
        self.open_session(int(session_id))

    def _on_session_failed(self, message: str, _tb: str) -> None:
        self.creating = None
        self.new_button.setEnabled(True)
        self.title.setText("Open or create a listening session")
        self.message.setText(f"Cannot create the session: {message}")
