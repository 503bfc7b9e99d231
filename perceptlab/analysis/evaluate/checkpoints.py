"""What a given encoder checkpoint says about itself: its training loss, whether its recorded
training or validation clips are among the evaluated ones (matching rules in the package
docstring), and whether it converged."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from perceptlab.library.store import Clip

from .data import SegmentData

def _primary_loss(loss) -> str | None:
    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict) and loss:
        return max(sorted(loss), key=lambda k: loss[k])
    return None



def _hash_kind(text) -> str | None:
    """``"content_hash"`` for 32 hex digits (the library's blake2b-128), ``"sha256"`` for 64, else None."""
    if isinstance(text, str) and len(text) in (32, 64) and all(ch in "0123456789abcdef" for ch in text.lower()):
        return "content_hash" if len(text) == 32 else "sha256"
    return None


def recorded_files(rows) -> list[dict]:
    """A checkpoint's recorded file list (``data.train_files``) as dicts.

    Entries may be ``{"path", "sha256"}``, ``{"path", "content_hash", ...}``
    (what the training engine writes), a bare content hash (32 hex digits) or
    SHA-256 (64), or a bare path. Each comes back as ``{"name", "size",
    "content_hash", "sha256"}`` (lower-case hashes; None where not recorded).
    """
    out = []
    for r in rows or []:
        e = {"name": None, "size": None, "content_hash": None, "sha256": None}
        if isinstance(r, str):
            kind = _hash_kind(r)
            if kind:
                e[kind] = r.lower()
            else:
                e["name"] = Path(r).name
        elif isinstance(r, dict):
            path = r.get("path")
            e["name"] = r.get("name") or (Path(str(path)).name if path else None)
            e["size"] = r.get("size")
            for key in ("content_hash", "sha256"):
                v = r.get(key)
                e[key] = v.lower() if isinstance(v, str) and v else None
        else:
            continue
        out.append(e)
    return out


class _ClipMatcher:
    """Which evaluated clips a recorded training list names (see the module docstring for the rules)."""

    def __init__(self, clips: Sequence[Clip]):
        self.clips = list(clips)
        self.by_hash = {c.content_hash: i for i, c in enumerate(self.clips)}
        self._sha: dict[str, int] | None = None
        self._unverified: set[int] = set()

    def _sha256_index(self) -> dict[str, int]:
        """SHA-256 of each clip's file, for the files that still hold the imported content."""
        import hashlib

        if self._sha is None:
            self._sha = {}
            for i, c in enumerate(self.clips):
                sha, b2 = hashlib.sha256(), hashlib.blake2b(digest_size=16)
                try:
                    with open(c.path, "rb") as fh:
                        while chunk := fh.read(1 << 20):
                            sha.update(chunk)
                            b2.update(chunk)
                except OSError:
                    self._unverified.add(i)
                    continue
                if b2.hexdigest() != c.content_hash:  # changed since import: not the audio evaluated
                    self._unverified.add(i)
                    continue
                self._sha[sha.hexdigest()] = i
        return self._sha

    def _by_name(self, e: dict, allowed) -> set[int]:
        if not e["name"]:
            return set()
        return {i for i in allowed if Path(self.clips[i].path).name == e["name"]
                and (e["size"] is None or self.clips[i].size == e["size"])}

    def match(self, hashes, files) -> tuple[set[int], set[int]]:
        """(clips matched by content, clips matched only by file name) for a hash list and a file list."""
        content = {self.by_hash[h] for h in (hashes or []) if h in self.by_hash}
        by_name: set[int] = set()
        for e in recorded_files(files):
            if e["content_hash"]:
                if e["content_hash"] in self.by_hash:
                    content.add(self.by_hash[e["content_hash"]])
            elif e["sha256"]:
                hit = self._sha256_index().get(e["sha256"])
                if hit is not None:
                    content.add(hit)
                else:
                    by_name |= self._by_name(e, self._unverified)
            else:
                by_name |= self._by_name(e, range(len(self.clips)))
        return content, by_name - content


def _convergence(enc) -> dict:
    """Whether a checkpoint's best epoch was its run's last, from what it (and a last.pt beside it) records."""
    m, prog = enc.metrics or {}, enc.progress or {}
    history = m.get("history") or []
    best = m.get("best_epoch")
    saved = prog.get("epoch") or len(history) or None
    last, source = None, None
    if saved is not None and best is not None and saved > best:
        last, source = saved, "the checkpoint's progress"
    else:
        sib = enc.path.with_name("last.pt") if enc.path is not None and enc.path.name != "last.pt" else None
        if sib is not None and sib.is_file():
            from perceptlab.models.checkpoint import CheckpointError, load_checkpoint

            try:
                other = load_checkpoint(sib)
            except CheckpointError:
                other = None
            if other is not None and (other.get("data") or {}).get("selection_hash") == enc.data.get(
                    "selection_hash") and (other.get("train_config") or {}).get("name") == enc.name:
                last, source = (other.get("progress") or {}).get("epoch"), f"{sib.name} beside it"
        if last is None and m.get("run_epochs"):  # recorded by whoever kept best.pt without last.pt
            last, source = int(m["run_epochs"]), "the epochs its run trained in all"
        if last is None and enc.train_config.get("epochs"):
            last, source = int(enc.train_config["epochs"]), "its training config's epochs"
        if last is None and saved is not None:
            last, source = saved, "the checkpoint's progress"
    val = any(h.get("val_loss") is not None for h in history) if history else True
    return {"best_epoch": best, "last_epoch": last, "source": source, "validated": val,
            "best_at_last_epoch": best is not None and last is not None and best >= last}


def not_converged_warning(label: str, best_epoch, last_epoch, validated: bool = True) -> str:
    what = "best validation loss" if validated else "best training loss (no validation split)"
    return (f"{label}: {what} at the last epoch ({best_epoch} of {last_epoch}): not converged; train longer")


def _checkpoint_info(enc, data: SegmentData, library_fp: str) -> tuple[dict, list[str]]:
    d = enc.data or {}
    info = {
        "path": str(enc.path), "name": enc.name, "loss": enc.loss, "primary_loss": _primary_loss(enc.loss),
        "model_hash": enc.model_hash, "latent_dim": enc.latent_dim, "patch_frames": enc.patch_frames,
        "feature_config": enc.feature_config.to_dict(), "fingerprint": d.get("fingerprint"),
        "library": d.get("library"), "trained_on_this_library": d.get("fingerprint") == library_fp,
        "epochs": (enc.progress or {}).get("epoch"), "convergence": _convergence(enc),
    }
    warns = []
    recorded = [k for k in ("train_hashes", "val_hashes", "train_files", "val_files") if d.get(k) is not None]
    if d.get("train_hashes") is None and d.get("train_files") is None:
        info["overlap"] = None
        warns.append(
            f"checkpoint {enc.path}: it records no training clips (data.train_hashes or data.train_files), so "
            f"its independence from the evaluated clips cannot be checked; its scores are only as honest as "
            f"that declaration"
        )
        return info, warns
    matcher = _ClipMatcher(data.clips)
    tr, tr_name = matcher.match(d.get("train_hashes"), d.get("train_files"))
    va, va_name = matcher.match(d.get("val_hashes"), d.get("val_files"))
    va, va_name = va - tr - tr_name, va_name - tr - tr_name
    n_eval = len(data.clips)
    n_tr, n_val = len(tr | tr_name), len(va | va_name)
    info["overlap"] = {"train": n_tr, "val": n_val, "evaluated": n_eval,
                       "train_by_name": len(tr_name), "val_by_name": len(va_name), "recorded": recorded,
                       "train_clips": sorted(data.clips[i].id for i in tr | tr_name),
                       "val_clips": sorted(data.clips[i].id for i in va | va_name)}
    if n_tr or n_val:
        same = " (it was trained on this very library: same fingerprint)" if info["trained_on_this_library"] else ""
        named = len(tr_name) + len(va_name)
        how = (f" ({named} of them matched by file name only: their files could not be read to compare "
               f"content)" if named else "")
        examples = ", ".join(data.clips[i].name for i in sorted(tr | tr_name | va | va_name)[:3])
        warns.append(
            f"checkpoint {enc.path} ({enc.name}) was trained on {n_tr} of the {n_eval} evaluated clips and "
            f"validated on {n_val} more{how}{same}, e.g. {examples}: its encoder has seen the test folds, so its "
            f"scores are optimistic and the verdict on the claim is not trustworthy; use --train-config "
            f"(one encoder per fold) or a checkpoint trained on other data"
        )
    return info, warns

