"""Rows of a matrix or k-NN graph sharded over processes, resumable per shard.

``torchrun --nproc-per-node P [--nnodes M ...] -m perceptlab.cli matrix ...``
starts P x M copies of the command with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set. The rows 0..N-1 are cut into shards of ``shard_rows``
rows (a function of N alone, so a rerun with another number of processes
still finds its shards), dealt to the ranks back and forth
(:func:`shard_owner`). A shard of rows r0..r1-1 computes the pairs its rows
own (:meth:`perceptlab.analysis.knn_graph.RowEngine.owned`, each pair owned
by one clip): for a dense matrix those rows with NaN where another row owns
the pair, for a k-NN graph the closest K candidates its pairs give every
row (:func:`perceptlab.analysis.knn_graph.owned_knn`). Each rank writes each of
its shards atomically (temp + rename) as ``shard-NNNNN.npz`` and
then its manifest ``shard-NNNNN.json`` naming the library (path and content
fingerprint), the metric, the feature config hash, the comparison, the
clips, the row range and the SHA-256 of the .npz. A shard counts as written
only when its manifest matches the run and its checksum matches the file,
so a rerun skips those and recomputes the missing, damaged or foreign ones.

Rank 0 then assembles the result: the graph by merging every shard's
candidates row by row, the matrix through a memory map of the .npy. Shards written on another machine reach
it through the process group when its own shard folder lacks them (a
folder all machines share needs no transfer). Without torchrun everything
runs as one process (world size 1), resumable in the same way.

The process group is gloo on the CPU and NCCL when the device is CUDA
(:func:`choose_backend`); the work itself needs no collective beyond a
barrier and the transfer of finished shards, which always goes through a
gloo group on the CPU.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from perceptlab.atomic import atomic_write
from perceptlab.analysis.knn_graph import (RowEngine, dense_matrix, merge_top_k, owned_knn,
                                           owned_rows, place_owned)
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report

SHARD_FORMAT = "perceptlab-matrix-shard/1"
BACKENDS = ("auto", "gloo", "nccl")
#: How long a rank waits at the closing barrier for the slowest rank.
BARRIER_TIMEOUT = datetime.timedelta(hours=48)


class ShardingError(ValueError):
    """A bad torchrun environment or shard folder; the message says what and why."""


# -- the torchrun environment ----------------------------------------------------


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits among the torchrun processes (world 1 without torchrun)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, environ=None) -> "DistEnv":
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; ShardingError for a broken set.

        None of them set: one process. ``WORLD_SIZE`` 1: one process too.
        """
        env = os.environ if environ is None else environ
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        present = [n for n in names if env.get(n, "") != ""]
        if not present:
            return cls()
        values = {}
        for n in names:
            text = env.get(n, "")
            if text == "":
                if n == "LOCAL_RANK":
                    continue
                raise ShardingError(f"{', '.join(f'{p}={env[p]}' for p in present)} is set but {n} is not: "
                                    "start the command with torchrun (it sets RANK, WORLD_SIZE and LOCAL_RANK)")
            try:
                values[n] = int(text)
            except ValueError:
                raise ShardingError(f"{n}={text!r}: not a whole number (torchrun sets RANK, WORLD_SIZE "
                                    "and LOCAL_RANK)") from None
        world, rank = values["WORLD_SIZE"], values["RANK"]
        local = values.get("LOCAL_RANK", rank)
        if world < 1:
            raise ShardingError(f"WORLD_SIZE={world}: must be at least 1")
        if not 0 <= rank < world:
            raise ShardingError(f"RANK={rank}: must be between 0 and WORLD_SIZE-1 = {world - 1}")
        if local < 0:
            raise ShardingError(f"LOCAL_RANK={local}: must be 0 or more")
        if world > 1:
            missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if not env.get(n)]
            if missing:
                raise ShardingError(f"WORLD_SIZE={world} but {' and '.join(missing)} not set: the processes "
                                    "cannot find each other; start the command with torchrun "
                                    "(it sets them), e.g. torchrun --nproc-per-node 2 -m perceptlab.cli matrix ...")
        return cls(world, rank, local)


def choose_backend(requested: str, device: str) -> str:
    """The process-group backend: ``auto`` is NCCL on CUDA, gloo on the CPU.

    NCCL needs CUDA: asked for on a machine without it, or with the CPU as
    the device, it is refused with a message that suggests gloo.
    """
    import torch

    if requested not in BACKENDS:
        raise ShardingError(f"--backend {requested!r}: use one of {', '.join(BACKENDS)}")
    cuda = str(device).startswith("cuda")
    if requested == "auto":
        return "nccl" if cuda else "gloo"
    if requested == "nccl":
        if not torch.cuda.is_available():
            raise ShardingError("--backend nccl: NCCL needs CUDA GPUs and torch sees none on this machine "
                                "(torch.cuda.is_available() is False); use --backend gloo to shard over CPU "
                                "processes")
        if not cuda:
            raise ShardingError("--backend nccl: NCCL works on CUDA devices but the device is the CPU; "
                                "give --device cuda, or use --backend gloo")
        if not torch.distributed.is_nccl_available():
            raise ShardingError("--backend nccl: this torch build has no NCCL; use --backend gloo")
    return requested


def rank_device(device: str, env: DistEnv) -> str:
    """Under torchrun, ``cuda`` means this process's GPU: ``cuda:LOCAL_RANK``."""
    if env.enabled and device == "cuda":
        import torch

        count = torch.cuda.device_count()
        if env.local_rank >= count:
            raise ShardingError(f"LOCAL_RANK={env.local_rank}: this machine has {count} CUDA device(s); "
                                f"start at most {count} processes per node (--nproc-per-node {count})")
        return f"cuda:{env.local_rank}"
    return device


class ProcessGroup:
    """The process group of a sharded run (nothing at all in one process)."""

    def __init__(self, env: DistEnv, backend: str, device: str):
        self.env = env
        self.backend = backend
        self._gloo = None
        if not env.enabled:
            return
        import torch
        import torch.distributed as dist

        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        try:
            if not dist.is_initialized():
                dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
        except (RuntimeError, ValueError) as exc:
            raise ShardingError(f"joining the {backend} process group (rank {env.rank} of {env.world}) failed: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        # Finished shards travel as CPU objects through gloo whatever the backend.
        self._gloo = dist.new_group(backend="gloo", timeout=BARRIER_TIMEOUT) if backend != "gloo" else None

    @property
    def cpu_group(self):
        return self._gloo

    def barrier(self) -> None:
        if self.env.enabled:
            import torch.distributed as dist

            dist.barrier(group=self._gloo)

    def gather(self, obj):
        """Every rank's ``obj`` as a list on rank 0 (None elsewhere); [obj] in one process."""
        if not self.env.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.env.world if self.env.is_main else None
        dist.gather_object(obj, out, dst=0, group=self._gloo)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.env.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self._gloo)
        return box[0]

    def close(self) -> None:
        if self.env.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


# -- shards ------------------------------------------------------------------------


def default_shard_rows(n: int) -> int:
    """Rows per shard: N / 16 rounded up, between 1 and 256 (a function of N alone)."""
    return int(max(1, min(256, -(-n // 16))))


def shard_ranges(n: int, shard_rows: int) -> list[tuple[int, int]]:
    if shard_rows < 1:
        raise ShardingError(f"--shard-rows {shard_rows}: must be at least 1")
    return [(r0, min(r0 + shard_rows, n)) for r0 in range(0, n, shard_rows)]


def shard_owner(s: int, world: int) -> int:
    """The rank that computes shard ``s``: back and forth over the ranks (0 1 1 0 0 1 ...).

    A shard of early rows costs more than one of late rows (its rows meet
    every later clip), so a plain round robin would load rank 0 most.
    """
    turn, place = divmod(s, world)
    return place if turn % 2 == 0 else world - 1 - place


def run_key(library, metric_name: str, clips, config, excerpt: str, n_frames: int, kind: str,
            k: int | None, shard_rows: int) -> dict:
    """What a shard must match to be reused: the library, metric, features, clips and cut."""
    h = hashlib.sha256()
    for c in clips:
        h.update(f"{c.id}\t{c.content_hash}\n".encode())
    return {"format": SHARD_FORMAT, "kind": kind, "k": k, "library": str(Path(library.path).resolve()),
            "library_fingerprint": library.fingerprint(), "metric": metric_name,
            "feature_config": config.hash, "excerpt": excerpt,
            "excerpt_frames": n_frames if excerpt == "centre" else None,
            "n": len(clips), "clips_sha256": h.hexdigest(), "shard_rows": shard_rows}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shard_paths(folder: Path, s: int) -> tuple[Path, Path]:
    return folder / f"shard-{s:05d}.npz", folder / f"shard-{s:05d}.json"


def write_shard(folder: Path, key: dict, s: int, rows: tuple[int, int], arrays: dict, rank: int = 0) -> None:
    """Write shard ``s``: its arrays, then its manifest (each atomically)."""
    data, manifest = shard_paths(folder, s)
    atomic_write(data, lambda f: np.savez(f, **arrays))
    meta = {**key, "shard": s, "rows": [int(rows[0]), int(rows[1])], "file": data.name,
            "sha256": _sha256(data), "written_by_rank": rank}
    atomic_write(manifest, lambda f: f.write((json.dumps(meta, indent=1) + "\n").encode()))


def shard_problem(folder: Path, key: dict, s: int, rows: tuple[int, int]) -> str | None:
    """Why shard ``s`` cannot be reused (None: it is written and valid)."""
    data, manifest = shard_paths(folder, s)
    if not manifest.exists() or not data.exists():
        return "not written"
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        return f"manifest unreadable ({exc})"
    if not isinstance(meta, dict):
        return "manifest unreadable"
    for name, value in key.items():
        if meta.get(name) != value:
            return f"written for another {name} ({meta.get(name)!r}, not {value!r})"
    if meta.get("shard") != s or meta.get("rows") != [int(rows[0]), int(rows[1])]:
        return f"manifest names shard {meta.get('shard')} rows {meta.get('rows')}"
    if _sha256(data) != meta.get("sha256"):
        return "checksum does not match: the file is damaged"
    return None


def read_shard(folder: Path, s: int) -> dict:
    data, _ = shard_paths(folder, s)
    with np.load(data, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def _shard_bytes(folder: Path, s: int) -> tuple[bytes, bytes]:
    data, manifest = shard_paths(folder, s)
    return data.read_bytes(), manifest.read_bytes()


def _receive_shard(folder: Path, key: dict, s: int, rows, payload: tuple[bytes, bytes]) -> None:
    data, manifest = shard_paths(folder, s)
    blob, meta = payload
    atomic_write(data, lambda f: f.write(blob))
    atomic_write(manifest, lambda f: f.write(meta))
    problem = shard_problem(folder, key, s, rows)
    if problem:
        raise ShardingError(f"{data}: shard {s} from another rank is not valid here: {problem}")


@dataclass
class ShardReport:
    """What a sharded run did: shards reused, computed, and received from other machines."""

    total: int = 0
    reused: int = 0
    computed: int = 0
    received: int = 0
    folder: str = ""
    world: int = 1
    recomputed_because: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"folder": self.folder, "processes": self.world, "total": self.total, "reused": self.reused,
                "computed": self.computed, "received": self.received,
                "recomputed_because": {str(k): v for k, v in sorted(self.recomputed_because.items())}}


def _clean_temporaries(folder: Path) -> None:
    """Leftovers of writes a kill interrupted (``.shard-*.tmp``); never a finished file."""
    for p in folder.glob(".shard-*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass


def compute_shards(engine_factory: Callable[[], RowEngine], engine_n: int, key: dict, folder: Path,
                   group: ProcessGroup, kind: str, k: int | None, shard_rows: int,
                   progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> ShardReport:
    """Compute this rank's missing shards, then bring every shard to rank 0's folder.

    ``engine_factory`` builds the row engine only when this rank has work
    (loading every clip's image is the O(N) start-up cost). ``progress``
    counts this rank's rows.
    """
    env = group.env
    folder.mkdir(parents=True, exist_ok=True)
    ranges = shard_ranges(engine_n, shard_rows)
    mine = [s for s in range(len(ranges)) if shard_owner(s, env.world) == env.rank]
    problems = {s: shard_problem(folder, key, s, ranges[s]) for s in mine}
    todo = [s for s in mine if problems[s] is not None]
    total_rows = sum(ranges[s][1] - ranges[s][0] for s in todo)
    report(progress, 0, total_rows)
    engine = engine_factory() if todo else None
    done = 0
    for s in todo:
        check_cancel(cancel)
        r0, r1 = ranges[s]
        if kind == "knn":
            idx, dist = owned_knn(engine, k, r0, r1, progress, cancel, done_before=done, total=total_rows)
            arrays = {"indices": idx, "distances": dist}
        else:
            arrays = {"rows": owned_rows(engine, r0, r1, progress, cancel, done_before=done, total=total_rows)}
        write_shard(folder, key, s, (r0, r1), arrays, env.rank)
        done += r1 - r0
    counts = {"reused": len(mine) - len(todo), "computed": len(todo),
              "because": {s: problems[s] for s in todo}}
    all_counts = group.gather(counts)
    # Rank 0 asks for the shards its own folder lacks (a folder that is not
    # shared between machines); their writers send them.
    lacking = None
    if env.is_main:
        lacking = [s for s in range(len(ranges)) if shard_problem(folder, key, s, ranges[s]) is not None]
    lacking = group.broadcast(lacking)
    sent = {}
    for s in lacking:
        if shard_owner(s, env.world) == env.rank and not env.is_main:
            sent[s] = _shard_bytes(folder, s)
    received = 0
    if lacking and env.enabled:
        gathered = group.gather(sent)
        if env.is_main:
            for part in gathered:
                for s, payload in (part or {}).items():
                    _receive_shard(folder, key, s, ranges[s], payload)
                    received += 1
    rep = ShardReport(total=len(ranges), folder=str(folder.resolve()), world=env.world, received=received)
    if env.is_main:
        for c in all_counts:
            rep.reused += c["reused"]
            rep.computed += c["computed"]
            rep.recomputed_because.update(c["because"])
        _clean_temporaries(folder)  # every rank has finished writing
        still = [s for s in range(len(ranges)) if shard_problem(folder, key, s, ranges[s]) is not None]
        if still:
            raise ShardingError(f"{folder}: shards {still[:5]} are missing after every rank finished")
    return rep


def assemble_knn(folder: Path, n: int, k: int, shard_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The (N, K) indices and distances: every shard's candidates merged row by row."""
    idx = np.full((n, k), -1, dtype=np.int64)
    dist = np.full((n, k), np.inf)
    for s, _ in enumerate(shard_ranges(n, shard_rows)):
        part = read_shard(folder, s)  # (N, K) candidates from the pairs its rows own
        idx, dist = merge_top_k(idx, dist, part["indices"], part["distances"], k)
    if (idx < 0).any():
        raise ShardingError(f"{folder}: the shards leave rows without {k} neighbours; remove the folder and rerun")
    return idx, dist


def assemble_dense(folder: Path, n: int, shard_rows: int, out: Path) -> Path:
    """Write the (N, N) float64 matrix to ``out`` (.npy) from the shards, without holding it in RAM.

    Shard r0..r1-1 holds its rows from column r0 on; they and their mirror
    (the same columns below) go into a memory map, so every pair comes from
    the one shard that computed it and the matrix is exactly symmetric.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.assembling.npy")
    m = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(n, n))
    try:
        for s, (r0, r1) in enumerate(shard_ranges(n, shard_rows)):
            place_owned(m, r0, read_shard(folder, s)["rows"])  # (r1 - r0, N), NaN where not owned
        idx = np.arange(n)
        m[idx, idx] = 0.0
        m.flush()
        del m
        os.replace(tmp, out)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return out


# -- the matrix command's work ----------------------------------------------------------


@dataclass
class MatrixRun:
    """What :func:`matrix_rows` produced (on rank 0; other ranks only ``is_main`` False)."""

    is_main: bool
    clips: list
    kind: str
    k: int | None = None
    graph: object = None  # KnnGraph for kind "knn"
    matrix: np.ndarray | None = None  # (N, N) in memory, or a read-only memory map of ``out``
    out: Path | None = None
    shards: ShardReport | None = None
    device: str = "cpu"
    backend: str | None = None
    env: DistEnv = field(default_factory=DistEnv)


def matrix_rows(library, metric_name: str, *, knn: int | None = None, out: Path | None = None, config=None,
                excerpt: str = "whole", n_frames: int = 128, device: str | None = None, backend: str = "auto",
                shard_dir: Path | None = None, shard_rows: int | None = None, memory_budget_mb: float = 512,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                environ=None) -> MatrixRun:
    """The k-NN graph (``knn=K``) or the dense matrix of a library, row block by row block.

    One process without ``shard_dir``: computed in memory (the graph never
    holds more than a block of rows of distances). Under torchrun, or with
    ``shard_dir``, the rows are sharded (see the module notes) and rank 0
    writes ``out``: the graph as .npz/.csv/.jsonl, the matrix as .npy.
    ``progress`` counts this process's rows.
    """
    from perceptlab.analysis.knn_graph import check_device, make_graph
    from perceptlab.audio.features import FeatureConfig

    config = FeatureConfig() if config is None else config
    env = DistEnv.from_env(environ)
    device = rank_device(check_device(device), env)
    backend_used = choose_backend(backend, device)
    kind = "knn" if knn is not None else "dense"
    clips = list(library.clips())
    n = len(clips)
    if n < 2:
        raise ValueError(f"{library.path}: distances between clips need at least 2 clips, found {n}")
    if knn is not None and not 1 <= knn <= n - 1:
        raise ValueError(f"--knn {knn}: must be between 1 and {n - 1} (the other clips of {library.path})")
    sharded = env.enabled or shard_dir is not None
    if sharded and out is None:
        raise ShardingError("a sharded run (torchrun or --shard-dir) assembles its result into a file: give --out")
    shard_rows = default_shard_rows(n) if shard_rows is None else int(shard_rows)
    if shard_rows < 1:
        raise ShardingError(f"--shard-rows {shard_rows}: must be at least 1")

    def engine():
        return RowEngine(library, metric_name, clips, config, excerpt, n_frames, device, memory_budget_mb,
                         cancel=cancel)

    run = MatrixRun(env.is_main, clips, kind, knn, device=device, env=env,
                    backend=backend_used if env.enabled else None)
    if not sharded:
        e = engine()
        report(progress, 0, n)
        if kind == "knn":
            idx, dist = owned_knn(e, knn, 0, n, progress, cancel)
            run.graph = make_graph(e, idx, dist, knn)
            if out is not None:
                run.out = run.graph.save(out)
        else:
            run.matrix = dense_matrix(e, progress, cancel)
            if out is not None:
                atomic_write(Path(out), lambda f: np.save(f, run.matrix))
                run.out = Path(out)
        return run

    out = Path(out)
    folder = Path(shard_dir) if shard_dir is not None else out.with_name(out.name + ".shards")
    key = run_key(library, metric_name, clips, config, excerpt, n_frames, kind, knn, shard_rows)
    group = ProcessGroup(env, backend_used, device)
    try:
        run.shards = compute_shards(engine, n, key, folder, group, kind, knn, shard_rows, progress, cancel)
        if env.is_main:
            if kind == "knn":
                from perceptlab.analysis.knn_graph import KnnGraph, graph_meta

                idx, dist = assemble_knn(folder, n, knn, shard_rows)
                run.graph = KnnGraph(idx, dist, np.array([c.id for c in clips], dtype=np.int64),
                                     [c.name for c in clips], [c.label for c in clips], [c.path for c in clips],
                                     graph_meta(library, metric_name, knn, config, excerpt, n_frames))
                run.out = run.graph.save(out)
            else:
                run.out = assemble_dense(folder, n, shard_rows, out)
                run.matrix = np.load(run.out, mmap_mode="r")
        group.barrier()  # the others wait until the result is written
    finally:
        group.close()
    return run
