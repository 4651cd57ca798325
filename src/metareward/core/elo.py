"""Bradley-Terry ("Elo") strengths of judgments from a weighted battle matrix.

Wu et al. 2024 (arXiv 2407.19594), Sec. 2.2 turn the meta-judge's pairwise verdicts into a score per
judgment with the Elo / Bradley-Terry model: P(j_m beats j_n) = sigmoid(eps_m - eps_n), fitted by
maximum likelihood on the battle matrix B (B_mn = weighted count of j_m beating j_n).
"""

from __future__ import annotations

import numpy as np

# Armijo sufficient-increase constant and the number of step halvings before giving up on a step.
_ARMIJO = 1e-4
_MAX_HALVINGS = 60
# Relative size of a change in the objective that float summation can still resolve.
_RESOLUTION = 1e-12


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(x))


def _validated(battles: np.ndarray) -> np.ndarray:
    """Return a float copy with a zero diagonal, or raise one ValueError listing every problem."""
    array = np.asarray(battles, dtype=float)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"battles must be a square 2-D matrix, got shape {array.shape}.")
    problems = []
    finite = np.isfinite(array)
    if not np.all(finite):
        problems.append("it contains NaN or infinite entries")
    if np.any(array[finite] < 0):
        problems.append("it contains negative entries (battle counts are weights >= 0)")
    if problems:
        raise ValueError(f"battles matrix is invalid: {'; '.join(problems)}.")
    array = array.copy()
    np.fill_diagonal(array, 0.0)  # a judgment never battles itself
    return array


def has_finite_mle(battles: np.ndarray) -> bool:
    """True when the unregularised maximum-likelihood strengths exist and are unique up to a shift.

    That holds exactly when the "m beat n" graph (edge m -> n where B_mn > 0) is strongly connected
    (Ford 1957, Zermelo 1929): otherwise some group of judgments never loses to the rest and its
    strengths run off to infinity, or the groups are not comparable at all.
    """
    wins = _validated(battles) > 0
    return _reaches_all(wins) and _reaches_all(wins.T)


def _reaches_all(adjacency: np.ndarray) -> bool:
    n = adjacency.shape[0]
    seen = np.zeros(n, dtype=bool)
    if n == 0:
        return True
    seen[0] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = adjacency[frontier].any(axis=0) & ~seen
        seen |= frontier
    return bool(seen.all())


def _objective(wins: np.ndarray, eps: np.ndarray, l2: float) -> float:
    diff = eps[:, None] - eps[None, :]
    return float(np.sum(wins * _log_sigmoid(diff)) - 0.5 * l2 * eps @ eps)


def _gradient(wins: np.ndarray, eps: np.ndarray, l2: float) -> np.ndarray:
    # d/d eps_m of B_mn log sigmoid(eps_m - eps_n) is B_mn * sigmoid(eps_n - eps_m), and minus that for eps_n.
    surprise = wins * _sigmoid(eps[None, :] - eps[:, None])
    return surprise.sum(axis=1) - surprise.sum(axis=0) - l2 * eps


def _negative_hessian(wins: np.ndarray, eps: np.ndarray, l2: float) -> np.ndarray:
    # -H = Laplacian of C + l2 * I, with C_mn = (B_mn + B_nm) * p_mn * (1 - p_mn), p_mn = sigmoid(eps_m - eps_n).
    p = _sigmoid(eps[:, None] - eps[None, :])
    coupling = (wins + wins.T) * p * (1.0 - p)
    np.fill_diagonal(coupling, 0.0)
    return np.diag(coupling.sum(axis=1)) - coupling + l2 * np.eye(len(eps))


def _newton_step(wins: np.ndarray, eps: np.ndarray, l2: float, grad: np.ndarray) -> np.ndarray:
    # lstsq handles l2 == 0, where the Laplacian is singular along the all-ones direction; the minimum-norm
    # solution is then the step with zero mean, which is exactly the free direction we want to ignore.
    step, *_ = np.linalg.lstsq(_negative_hessian(wins, eps, l2), grad, rcond=None)
    return step


def _line_search(wins: np.ndarray, eps: np.ndarray, l2: float, grad: np.ndarray, step: np.ndarray) -> float:
    """Largest t in {1, 1/2, 1/4, ...} with Armijo sufficient increase; 0.0 when none improves."""
    current = _objective(wins, eps, l2)
    slope = float(grad @ step)
    if slope <= _RESOLUTION * max(1.0, abs(current)):
        # The predicted gain is below what float sums of the objective can resolve, so Armijo would reject
        # steps at random; this close to the optimum the full Newton step is the right one.
        return 1.0
    t = 1.0
    for _ in range(_MAX_HALVINGS):
        if _objective(wins, eps + t * step, l2) >= current + _ARMIJO * t * slope:
            return t
        t *= 0.5
    return 0.0


def bradley_terry_elo(
    battles: np.ndarray,
    l2: float = 1e-3,
    max_iter: int = 100,
    tol: float = 1e-10,
    *,
    fallback_l2: float = 1e-3,
) -> np.ndarray:
    """Fit Bradley-Terry strengths eps (Wu et al. 2024, arXiv 2407.19594, Sec. 2.2).

    Maximises the concave objective

        L(eps) = sum_{m,n} B_mn * log sigmoid(eps_m - eps_n) - l2 / 2 * ||eps||^2

    by Newton's method (closed-form gradient and Hessian, backtracking line search), stopping when
    max |grad L| <= tol or after ``max_iter`` steps. The diagonal of B is ignored.

    Why the ridge: when one judgment wins every battle it took part in, the unregularised maximiser is
    infinite; a small ``l2 > 0`` keeps eps finite and preserves the order. With ``l2 > 0`` the maximiser
    already has mean 0; with ``l2 == 0`` it is only defined up to a shift and is returned centred to mean
    0. If ``l2 == 0`` and the MLE does not exist (see :func:`has_finite_mle`), the fit silently uses
    ``fallback_l2`` instead, so a lopsided battle matrix still yields a finite, ordered answer.
    """
    if l2 < 0 or fallback_l2 < 0:
        raise ValueError(f"l2 and fallback_l2 must be >= 0, got l2={l2}, fallback_l2={fallback_l2}.")
    wins = _validated(battles)
    if l2 == 0 and not has_finite_mle(wins):
        l2 = fallback_l2
    eps = np.zeros(wins.shape[0])
    for _ in range(max_iter):
        grad = _gradient(wins, eps, l2)
        if eps.size == 0 or np.max(np.abs(grad)) <= tol:
            break
        step = _newton_step(wins, eps, l2, grad)
        t = _line_search(wins, eps, l2, grad, step)
        if t == 0.0:
            break  # no representable improvement left: we sit at the numerical optimum
        eps = eps + t * step
    return eps - eps.mean() if eps.size else eps
