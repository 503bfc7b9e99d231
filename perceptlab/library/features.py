"""Log-mel images of clips, through the library's feature cache.

Everything that needs a clip's image (metrics, neighbours, training, the
spectrogram view) goes through :func:`clip_image`, so the cache rules live in
one place: a hit is returned as is, a miss or a damaged entry is recomputed
from the file and stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from perceptlab.audio.decode import AudioError, iter_blocks
from perceptlab.audio.features import DEFAULT_EXCERPT_FRAMES, FeatureConfig, excerpt, log_mel_blocks
from perceptlab.library.store import Clip, Library, file_hash
from perceptlab.tasks import CancelFn, ProgressFn, check_cancel, report


def file_image(path: str | os.PathLike, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The (n_mels, T) image of any audio file, bypassing the cache.

    Decoding, resampling and the STFT all stream block by block, so memory is
    the image plus a few blocks however long the file is.
    """
    return log_mel_blocks(iter_blocks(path, config.sample_rate), config)


def file_analysis(path: str | os.PathLike, config: FeatureConfig = FeatureConfig()) -> tuple[np.ndarray, float]:
    """(image, integrated loudness in LUFS) of any audio file, in one streamed pass.

    The loudness is that of the mono downmix at ``config.sample_rate`` (see
    :mod:`perceptlab.audio.loudness`); -inf for digital silence.
    """
    from perceptlab.audio.loudness import LoudnessMeter

    meter = LoudnessMeter(config.sample_rate)
    image = log_mel_blocks(iter_blocks(path, config.sample_rate), config, meter=meter)
    return image, meter.lufs()


def clip_image(library: Library, clip: Clip, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The (n_mels, T) image of a library clip, cached by content and config.

    Raises
    ------
    AudioError
        If the image is not cached and the file is gone or no longer decodes.
    """
    if not clip.ok:
        raise AudioError(clip.path, f"was not imported: {clip.error}")
    return content_image(library, clip.path, clip.content_hash, config, since="it was imported",
                         remedy="; import it again")


def content_image(library: Library, path: str | os.PathLike, content_hash: str,
                  config: FeatureConfig = FeatureConfig(), *, since: str, remedy: str = "") -> np.ndarray:
    """The image of the file whose content hash is ``content_hash``, from the cache or computed and cached.

    The file is decoded only on a cache miss, and only after its hash is
    checked, so a changed file never puts a wrong image under an old hash.
    ``since`` names when the hash was taken, for the messages.

    Raises
    ------
    AudioError
        The file is gone, has changed, or no longer decodes.
    """
    image = library.get_features(content_hash, config.hash)
    if image is not None:
        return image
    path = Path(path)
    if not path.exists():
        raise AudioError(path, f"file has moved or been deleted since {since}")
    if file_hash(path) != content_hash:
        raise AudioError(path, f"file has changed since {since}{remedy}")
    image = file_image(path, config)
    library.put_features(content_hash, config.hash, image)
    return image


def clip_excerpts(
    library: Library,
    clips: list[Clip],
    config: FeatureConfig = FeatureConfig(),
    n_frames: int = DEFAULT_EXCERPT_FRAMES,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> np.ndarray:
    """Stack the excerpts of many clips for the metrics.

    Returns
    -------
    numpy.ndarray
        (N, 1, n_mels, n_frames) float32 in [0, 1]; see
        :func:`perceptlab.audio.features.excerpt` for the rule.
    """
    out = np.empty((len(clips), 1, config.n_mels, n_frames), dtype=np.float32)  # (N, 1, F, T)
    report(progress, 0, len(clips))
    for i, clip in enumerate(clips):
        check_cancel(cancel)
        out[i, 0] = excerpt(clip_image(library, clip, config), n_frames)
        report(progress, i + 1, len(clips))
    return out


# -- sounds of listening tests: a library clip, a rendered stimulus or any file ------------


def sound_key(sound: dict) -> str:
    """What identifies a sound dict's audio: its content hash, else its resolved path."""
    return sound.get("content_hash") or str(Path(sound["path"]).resolve())


def sound_excerpt(library, sound: dict, config: FeatureConfig = FeatureConfig(),
                  n_frames: int = DEFAULT_EXCERPT_FRAMES) -> np.ndarray:
    """The (F, n_frames) centre excerpt image of a sound dict (see :func:`sound_image`)."""
    return excerpt(sound_image(library, sound, config), n_frames)


def sound_image(library, sound: dict, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The whole (F, T) image of a sound dict (library clip, stimulus or any file).

    Library clips go through the clip cache; other files through the
    feature cache keyed by their content hash, checked against the file.
    """
    if library is not None and sound.get("clip_id") is not None:
        try:
            clip = library.clip(int(sound["clip_id"]))
        except KeyError:
            clip = None
        if clip is not None and clip.content_hash == sound.get("content_hash", clip.content_hash):
            return clip_image(library, clip, config)
    content = sound.get("content_hash")
    if library is not None and content:
        return content_image(library, sound["path"], content, config, since="the listening test was made")
    path = Path(sound["path"])
    if not path.exists():
        raise AudioError(path, "file has moved or been deleted")
    return file_image(path, config)
