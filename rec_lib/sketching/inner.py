"""The inner level of DiPS: adapt the user embedding on the sketch (eq. 2, 7, 8).

The base recommender ``g`` is an :class:`rec_lib.models.NCF` with a single,
global user embedding ``Theta(u)`` (the test users are new users, so the only
user-specific parameters are the ones adapted on their sketch). The item-side
parameters ``Theta(p)`` stay fixed in the inner loop; the user vector takes a
fixed number of gradient steps on the sketch loss, MAML-style:

    theta(u) <- theta(u) - alpha * grad_theta sum_j z_j l(r_j, g(j; theta))     (eq. 7, 8)

where the weights ``z`` are the indicator of the sketch over the positions of
the user's sequence. Keeping the graph of those steps (``create_graph=True``)
gives the meta-gradient w.r.t. ``Theta`` and, through ``z``, the gradient
``d l_{t+1} / d z_t`` that trains the policy.

Losses: explicit ratings, the squared error; implicit feedback, the
categorical cross-entropy of the item among all ``M`` items.

One inner step needs the gradients at ``Theta(u)`` only, and ``Theta(u)`` is
the same for every user, so the per-item gradients are shared:

    grad l(r, g(j; .))|_{Theta(u)} = 2 (g_j - r) J_j          (explicit)
                                   = sum_i p_i J_i - J_j       (implicit, p = softmax(g))

with ``J_j = d g(j; theta) / d theta`` at ``Theta(u)``, one ``[M, D]`` matrix
per step for all users (:func:`inner_gradients`), and
``theta_t* = Theta(u) - alpha sum_j z_j grad l_j`` (:func:`adapt_one_step`).
This is eq. 7 with one step, exactly, and it keeps the graph for the
meta-gradient; :func:`adapt_user` takes any number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rec_lib.models import NCF

__all__ = ["global_user", "item_losses", "adapt_user", "next_item_loss", "catalogue_scores", "InnerGradients",
           "inner_gradients", "adapt_one_step", "score_jacobian"]


def global_user(model: NCF) -> torch.Tensor:
    """``Theta(u)``: the global user vector ``[1, user_dim]`` (user 0 of a one-user NCF)."""
    if model.n_users != 1:
        raise ValueError(f"DiPS's base model has one global user embedding; build NCF(n_users=1, ...), got {model.n_users}")
    return model.user_vector(torch.zeros(1, dtype=torch.long, device=model.out.weight.device))


def catalogue_scores(model: NCF, theta: torch.Tensor) -> torch.Tensor:
    """``g(j; theta)`` for every item ``j``: ``[B, M]``."""
    return model.score_with_user(theta)


def item_losses(model: NCF, theta: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor,
                explicit: bool) -> torch.Tensor:
    """``l(r_j, g(x_j; theta))`` for the items ``[B, S]`` of each row (``theta`` ``[B, D]``).

    Explicit: ``(g - r)^2``. Implicit: ``logsumexp_i g(i) - g(x_j)`` (cross-entropy over all items).
    """
    if items.shape[0] != theta.shape[0]:
        raise ValueError(f"theta has {theta.shape[0]} rows but items {items.shape[0]}")
    if explicit:
        return (model.score_with_user(theta, items) - ratings) ** 2
    full = catalogue_scores(model, theta)
    return torch.logsumexp(full, dim=-1, keepdim=True) - full.gather(1, items)


def adapt_user(model: NCF, theta0: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor,
               weights: torch.Tensor, explicit: bool, alpha: float, steps: int,
               create_graph: bool) -> torch.Tensor:
    """``theta_t*``: ``steps`` gradient steps of size ``alpha`` from ``theta0`` on the weighted sketch loss (eq. 7-8).

    ``items``, ``ratings``, ``weights``: ``[B, S]`` (``weights`` = the sketch
    indicator ``z_t``, possibly carrying the straight-through gradient).
    ``theta0`` ``[B, D]`` or ``[1, D]``. With ``create_graph=False`` the result
    is detached (evaluation).
    """
    if steps < 0 or alpha < 0:
        raise ValueError(f"steps and alpha must be >= 0, got {steps}, {alpha}")
    if not items.shape == ratings.shape == weights.shape:
        raise ValueError(f"items, ratings and weights must share a shape, got {tuple(items.shape)}, "
                         f"{tuple(ratings.shape)}, {tuple(weights.shape)}")
    theta = theta0.expand(items.shape[0], -1)
    if not create_graph:
        theta = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        for _ in range(steps):
            loss = (weights * item_losses(model, theta, items, ratings, explicit)).sum()
            (grad,) = torch.autograd.grad(loss, theta, create_graph=create_graph)
            theta = theta - alpha * grad
            if not create_graph:
                theta = theta.detach().requires_grad_(True)
    return theta if create_graph else theta.detach()


def next_item_loss(model: NCF, theta: torch.Tensor, item: torch.Tensor, rating: torch.Tensor,
                   explicit: bool) -> torch.Tensor:
    """``l_{t+1}(theta_t*)``: the loss on the next interaction, per row ``[B]`` (eq. 1)."""
    return item_losses(model, theta, item.unsqueeze(1), rating.unsqueeze(1), explicit).squeeze(1)


@dataclass
class InnerGradients:
    """What one inner step needs, shared by all users: ``g(j; Theta(u))``, ``J_j`` and (implicit) ``sum_i p_i J_i``."""

    theta0: torch.Tensor  # [1, D]
    scores: torch.Tensor  # [M]
    jacobian: torch.Tensor  # [M, D]
    mean_jacobian: torch.Tensor | None  # [D], implicit only


def score_jacobian(model: NCF, theta: torch.Tensor, items: torch.Tensor | None = None,
                   create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``g(x; theta_b)`` ``[B, S]`` and their gradients w.r.t. each row's user vector ``[B, S, D]``.

    ``items`` ``[B, S]``, or ``None`` for the whole catalogue. One forward and
    one backward pass: each (row, item) pair gets its own copy of the user
    vector, so the gradient w.r.t. the copies is the per-item gradient.
    ``create_graph=True`` keeps the result differentiable w.r.t. ``theta``
    and the model.
    """
    B, D = theta.shape
    if items is None:
        items = torch.arange(model.n_items, device=theta.device).expand(B, -1)
    S = items.shape[1]
    with torch.enable_grad():
        copies = theta.unsqueeze(1).expand(B, S, D)
        if not (create_graph and copies.requires_grad):
            copies = copies.detach().clone().requires_grad_(True)
        scores = model.score_with_user(copies.reshape(B * S, D), items.reshape(B * S)).reshape(B, S)
        (jac,) = torch.autograd.grad(scores.sum(), copies, create_graph=create_graph)
    if not create_graph:
        scores, jac = scores.detach(), jac.detach()
    return scores, jac


def inner_gradients(model: NCF, explicit: bool, create_graph: bool = True) -> InnerGradients:
    """``g(j; Theta(u))`` and ``J_j = d g(j; theta) / d theta`` at ``Theta(u)`` for every item ``j``.

    ``create_graph=True`` keeps them differentiable w.r.t. ``Theta`` (the meta-gradient).
    """
    theta0 = global_user(model)
    if not create_graph:
        theta0 = theta0.detach()
    scores, jac = score_jacobian(model, theta0, None, create_graph)
    scores, jac = scores[0], jac[0]
    mean = None if explicit else torch.softmax(scores, 0) @ jac
    return InnerGradients(theta0, scores, jac, mean)


def adapt_one_step(grads: InnerGradients, items: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                   explicit: bool, alpha: float) -> torch.Tensor:
    """``theta_t* = Theta(u) - alpha sum_j z_j grad l(r_j, g(x_j; .))|_{Theta(u)}``: eq. 7 with one step, ``[B, D]``.

    ``items``, ``targets``, ``weights``: ``[B, S]``, as in :func:`adapt_user`
    (equal to it with ``steps=1``; a unit test checks values and gradients).
    """
    if not items.shape == targets.shape == weights.shape:
        raise ValueError(f"items, targets and weights must share a shape, got {tuple(items.shape)}, "
                         f"{tuple(targets.shape)}, {tuple(weights.shape)}")
    jac = grads.jacobian[items]  # [B, S, D]
    if explicit:
        coef = 2.0 * (grads.scores[items] - targets) * weights  # [B, S]
        step = (coef.unsqueeze(-1) * jac).sum(1)
    else:
        step = weights.sum(1, keepdim=True) * grads.mean_jacobian - (weights.unsqueeze(-1) * jac).sum(1)
    return grads.theta0 - alpha * step
