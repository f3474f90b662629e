"""Scalar root and fixed-point finders that run inside ``lax.while_loop``.

Both are generic (no activation, no mean-field knowledge): a safeguarded Newton
iteration for a fixed point of ``x -> x + g(x)``, and a bracketing-then-bisection
search for where a function changes sign. Each evaluates its function once per
iteration, in one loop, so the function is compiled once; both vmap, and every
lane stops as soon as it converges (the loop runs until the last lane does).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jax import lax

from jaxstab._typing import Array

ULPS = 16
"""Tolerances in units of the computation dtype's eps: a fixed point is converged at
``|g| <= ULPS eps x``, and a rate ``chi`` within ``ULPS`` ulps of 1 counts as 1 (a
depth scale beyond about ``1 / (ULPS eps)`` is not resolved by the arithmetic)."""


def solve_fixed_point(
    evaluate: Callable[[Array], tuple[Array, Array]],
    x0: Array,
    lo: float,
    hi: float,
    atol: float,
    num_iters: int,
) -> tuple[Array, Array, Array]:
    """Iterates a map ``x -> x + g(x)`` to its fixed point, with Newton acceleration.

    ``evaluate(x)`` returns ``(g, g')``, ``g(x) = map(x) - x``. The plain step
    ``x + g`` converges geometrically at rate ``map'`` and only algebraically where
    that is 1 (at criticality ``q`` decays like ``1 / (2 l)`` for tanh). A Newton step
    ``x - g / g'`` converges quadratically to a simple root and halves the distance to
    a double one; it is tried only where ``g' < 0`` (the map contracts, so the root
    it heads for is an attracting fixed point, the one the plain iteration reaches)
    and kept only if it reduces ``|g|`` and lands where ``g' < 0`` still; after a
    rejected one the next step is plain. Each iteration evaluates ``g`` once. Stops
    when ``|g| <= 16 eps x + atol``, then applies a last Newton correction.

    Returns:
      ``(x, g(x), g'(x))`` at the last accepted iterate.
    """
    rtol = ULPS * jnp.finfo(x0.dtype).eps
    State = tuple[Array, Array, Array, Array, Array, Array]

    def cond(state: State) -> Array:
        i, x, g, _, _, _ = state
        not_done = (jnp.abs(g) > rtol * x + atol) & jnp.isfinite(x + g)
        return (i == 0) | ((i < num_iters) & not_done)

    def body(state: State) -> State:
        # Evaluate the trial point; keep it unless it is a Newton step that does not
        # reduce |g|; propose the next trial. (The only call of `evaluate`: it is
        # inlined once into the compiled loop.)
        i, x, g, dg, x_try, tried_newton = state
        g_try, dg_try = evaluate(x_try)
        # A Newton step must reduce |g| and land where the map still contracts: it
        # may not jump onto (or towards) a repelling fixed point, such as c = 1 in
        # the chaotic phase.
        reject = tried_newton & ~((jnp.abs(g_try) < jnp.abs(g)) & (dg_try < 0))
        x = jnp.where(reject, x, x_try)
        g = jnp.where(reject, g, g_try)
        dg = jnp.where(reject, dg, dg_try)
        newton = x - g / dg
        try_newton = ~reject & (dg < 0) & jnp.isfinite(newton)
        x_try = jnp.clip(jnp.where(try_newton, newton, x + g), lo, hi)
        return i + 1, x, g, dg, x_try, try_newton

    zero = jnp.zeros_like(x0)
    init = (jnp.asarray(0), x0, zero, zero, jnp.clip(x0, lo, hi), jnp.asarray(False))
    _, x, g, dg, _, _ = lax.while_loop(cond, body, init)
    # The stopping test bounds |g|, but the error in x is |g| / (1 - map'), large where
    # the map contracts slowly. A last Newton correction from the final (g, g') costs
    # no evaluation; it is skipped where it is not small (as where every x is a fixed
    # point and g, g' are both rounding noise: ReLU at (2, 0), whose q0 is returned).
    step = g / dg
    polish = (dg < 0) & (jnp.abs(step) <= 1e-2 * jnp.abs(x))
    return jnp.where(polish, jnp.clip(x - step, lo, hi), x), g, dg


def find_sign_change(
    f: Callable[[Array], Array],
    floor: Array,
    start: Array,
    factor: float,
    limit: float,
    guess: Array | None = None,
    guess_tol: float = 0.0,
    max_iters: int = 400,
) -> tuple[Array, Array]:
    """``(x, found)``: where ``f`` (``< 0`` at ``floor``) turns ``>= 0``, to a few ulps.

    If a ``guess`` is given it is tried first, and returned if ``|f(guess)| <= guess_tol``.
    Otherwise brackets by stepping ``hi = start * factor^k`` up to ``limit`` (``lo`` the
    previous one, or ``floor``), then bisects: geometrically while the bracket spans
    more than a factor 4 (it may start decades wide), arithmetically after. One
    evaluation of ``f`` per iteration, in one loop, so ``f`` is compiled once.
    """
    eps = jnp.finfo(start.dtype).eps
    guess_stage, expand_stage, bisect_stage, done = 0, 1, 2, 3
    State = tuple[Array, Array, Array, Array, Array, Array]

    def cond(state: State) -> Array:
        i, stage, _, _, _, _ = state
        return (i < max_iters) & (stage != done)

    def body(state: State) -> State:
        i, stage, lo, hi, result, found = state
        mid = jnp.where((hi > 4 * lo) & (lo > 0), jnp.sqrt(lo * hi), 0.5 * (lo + hi))
        x = jnp.where(stage == guess_stage, start if guess is None else guess, mid)
        x = jnp.where(stage == expand_stage, hi, x)
        fx = f(x)
        above = fx >= 0
        accept = (stage == guess_stage) & (jnp.abs(fx) <= guess_tol)
        # Expanding: a sign change brackets the crossing in [lo, x]; none moves the
        # bracket up, until `limit` ends the search unsuccessfully.
        grow = (stage == expand_stage) & ~above
        bracketed = (stage == expand_stage) & above
        give_up = grow & (factor * hi > limit)
        bisecting = stage == bisect_stage
        lo = jnp.where(grow | (bisecting & ~above), x, lo)
        hi = jnp.where(grow, factor * hi, jnp.where(bracketed | (bisecting & above), x, hi))
        narrow = hi - lo <= 4 * eps * hi
        stage = jnp.where(
            stage == guess_stage,
            jnp.where(accept, done, expand_stage),
            jnp.where(
                stage == expand_stage,
                jnp.where(give_up, done, jnp.where(bracketed, bisect_stage, expand_stage)),
                jnp.where(narrow, done, bisect_stage),
            ),
        )
        result = jnp.where(accept, x, 0.5 * (lo + hi))
        return i + 1, stage, lo, hi, result, found | accept | bracketed

    first = jnp.asarray(expand_stage if guess is None else guess_stage)
    init = (jnp.asarray(0), first, floor, start, start, jnp.asarray(False))
    _, _, _, _, result, found = lax.while_loop(cond, body, init)
    return result, found
