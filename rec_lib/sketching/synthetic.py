"""Seeded synthetic streams built so that a learned sketch should win, and two controls where it should not.

A catalogue of ``n_topics * topic_items`` *topic* items (topic ``c`` owns the
ids ``c * topic_items .. (c + 1) * topic_items - 1``) followed by
``noise_items`` *noise* items with Zipf popularity. Each user has a topic;
at every step the next interaction is, with probability ``noise``, a noise
item drawn by popularity (independent of the user), else a uniformly drawn
item of the user's current topic. With ``drift_every > 0`` the user's topic
is redrawn (a different one) every ``drift_every`` steps.

What a sketch of ``K`` items should hold is known:

- ``signal`` (noise 0.7, no drift): the only items that say anything about
  the user are topic items; noise items are predictable from popularity
  alone. Reservoir sampling keeps a topic item with probability about
  ``1 - noise**K``; recency keeps the recent noise; a policy that learns
  "drop noise items" keeps topic items whenever one has been seen, so DiPS
  should beat them all (a design prediction: the chapter measures what each
  policy keeps, and whether it wins).
- ``clean`` (noise 0): every item is a topic item, all equally informative:
  there is nothing to learn, DiPS should tie Random.
- ``drift`` (noise 0.7, a new topic every 8 steps): only *recent* topic items
  tell the current topic; the policy's input (an unordered set) cannot see
  time, so recency should win.

:func:`make_stream` returns the interactions; :func:`synthetic_data` the
train / validation / test :class:`~rec_lib.sketching.protocol.SketchData`-like
parts used by the chapter (``protocol.prepare_synthetic``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rec_lib.data.schema import Interactions

__all__ = ["StreamSpec", "STREAMS", "make_stream", "topic_of", "is_noise"]


@dataclass(frozen=True)
class StreamSpec:
    """The structure of one synthetic stream (see the module docstring)."""

    n_topics: int = 10
    topic_items: int = 10
    noise_items: int = 50
    length: int = 40
    noise: float = 0.7
    drift_every: int = 0  # 0: the topic never changes
    zipf: float = 1.0  # noise popularity ~ rank^-zipf

    def __post_init__(self) -> None:
        if self.n_topics < 1 or self.topic_items < 1 or self.length < 2 or self.noise_items < 0:
            raise ValueError(f"need n_topics, topic_items >= 1, noise_items >= 0, length >= 2; got {self}")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"noise must be in [0, 1), got {self.noise}")
        if self.noise > 0 and self.noise_items == 0:
            raise ValueError("noise > 0 needs noise_items >= 1")
        if self.drift_every < 0 or (self.drift_every and self.n_topics < 2):
            raise ValueError(f"drift_every must be >= 0 (and needs 2 topics), got {self.drift_every}")

    @property
    def n_items(self) -> int:
        return self.n_topics * self.topic_items + self.noise_items


STREAMS = {
    "signal": StreamSpec(),
    "clean": StreamSpec(noise=0.0),
    "drift": StreamSpec(drift_every=8),
}


def topic_of(items: np.ndarray, spec: StreamSpec) -> np.ndarray:
    """The topic of each item id (``-1`` for noise items)."""
    items = np.asarray(items)
    return np.where(items < spec.n_topics * spec.topic_items, items // spec.topic_items, -1)


def is_noise(items: np.ndarray, spec: StreamSpec) -> np.ndarray:
    return topic_of(items, spec) < 0


def make_stream(spec: StreamSpec, n_users: int, seed: int, name: str = "synthetic") -> Interactions:
    """``n_users`` sequences of ``spec.length`` interactions (implicit, rating 1), timestamps = step.

    ``ground_truth`` holds each user's topic per step (``topics`` ``[U, T]``)
    and the spec. Deterministic given ``seed``.
    """
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    rng = np.random.default_rng(seed)
    U, T = n_users, spec.length
    topics = np.empty((U, T), dtype=np.int64)
    topics[:, 0] = rng.integers(0, spec.n_topics, U)
    for t in range(1, T):
        topics[:, t] = topics[:, t - 1]
        if spec.drift_every and t % spec.drift_every == 0:  # a different topic
            shift = rng.integers(1, spec.n_topics, U)
            topics[:, t] = (topics[:, t - 1] + shift) % spec.n_topics
    topic_pick = topics * spec.topic_items + rng.integers(0, spec.topic_items, (U, T))
    items = topic_pick
    if spec.noise > 0:
        pop = 1.0 / np.arange(1, spec.noise_items + 1) ** spec.zipf
        noise_pick = spec.n_topics * spec.topic_items + rng.choice(spec.noise_items, size=(U, T), p=pop / pop.sum())
        items = np.where(rng.random((U, T)) < spec.noise, noise_pick, topic_pick)
    df = pd.DataFrame({
        "user": np.repeat(np.arange(U), T).astype("int64"),
        "item": items.ravel().astype("int64"),
        "rating": np.ones(U * T, dtype="float32"),
        "timestamp": np.tile(np.arange(T), U).astype("int64"),
    })
    df = df.sort_values(["timestamp", "user"], kind="stable").reset_index(drop=True)
    return Interactions(df, U, spec.n_items, np.arange(U), np.arange(spec.n_items), name=name,
                        ground_truth={"topics": topics, "spec": spec})
