"""The ravine as a weight matrix: a quadratic over an m x n matrix W whose Hessian is a
Kronecker product (the structure Shampoo and SOAP assume), and its twin of the same spectrum in
a rotation that has no such structure.

Row by row, ``vec(W)`` (NumPy's ``reshape``), the loss

    f(W) = 1/2 tr((W - W*)^T A (W - W*) B)

has gradient ``A (W - W*) B`` and Hessian ``H = A (x) B`` (``A``: m x m, ``B``: n x n, both
symmetric positive definite), with eigenvalues the products ``a_i b_j`` and condition number
``kappa(A) kappa(B)``. Both problems are :class:`~descend.secondorder.problems.Quadratic` over
``vec(W)``, so Newton's method and the functional API run on them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from descend.secondorder.problems import Quadratic


def _rotation(size: int, rng: np.random.Generator) -> np.ndarray:
    basis, _ = np.linalg.qr(rng.standard_normal((size, size)))
    return basis


@dataclass(frozen=True, eq=False)
class MatrixQuadratic:
    """A quadratic over the ``shape`` matrix W, as a :class:`Quadratic` over ``vec(W)``.

    ``left`` and ``right`` are ``A`` and ``B`` when the Hessian is ``A (x) B`` (None for the
    rotated twin, whose Hessian is no Kronecker product); ``kronecker`` says which it is.
    """

    quadratic: Quadratic
    shape: tuple[int, int]
    left: np.ndarray | None = None
    right: np.ndarray | None = None

    @classmethod
    def kronecker(cls, kappa: float, shape: tuple[int, int], seed: int = 0) -> MatrixQuadratic:
        """``H = A (x) B``, each factor of condition number ``sqrt(kappa)`` (eigenvalues
        log-spaced from 1) in a random basis, so that ``H``'s is ``kappa``; a random ``W*``."""
        if not kappa >= 1:
            raise ValueError(f"kappa={kappa!r} is invalid: expected kappa >= 1")
        rng = np.random.default_rng(seed)
        (m, n), root = shape, float(np.sqrt(kappa))
        spectra = np.geomspace(1.0, root, m), np.geomspace(1.0, root, n)
        bases = _rotation(m, rng), _rotation(n, rng)
        left, right = ((q * s) @ q.T for q, s in zip(bases, spectra, strict=True))
        quadratic = Quadratic.from_spectrum(
            np.kron(*spectra), np.kron(*bases), rng.standard_normal(m * n)
        )
        return cls(quadratic, (m, n), 0.5 * (left + left.T), 0.5 * (right + right.T))

    @classmethod
    def rotated(cls, kappa: float, shape: tuple[int, int], seed: int = 0) -> MatrixQuadratic:
        """The Kronecker problem's spectrum and minimizer in a random rotation of all of
        ``vec(W)``: gradient descent and Newton's method see the same problem, a Kronecker
        preconditioner does not."""
        twin = cls.kronecker(kappa, shape, seed).quadratic
        size = shape[0] * shape[1]
        rotation = _rotation(size, np.random.default_rng([seed, size]))
        return cls(Quadratic.from_spectrum(twin.eigenvalues, rotation, twin.solution), shape)

    @property
    def kronecker_structured(self) -> bool:
        """Whether the Hessian is ``A (x) B``."""
        return self.left is not None

    @property
    def kappa(self) -> float:
        """The Hessian's condition number."""
        return self.quadratic.condition_number

    @property
    def size(self) -> int:
        """Entries of W."""
        return self.shape[0] * self.shape[1]

    @property
    def hessian(self) -> np.ndarray:
        """``H`` over ``vec(W)``."""
        return self.quadratic.A

    @property
    def target(self) -> np.ndarray:
        """The minimizer ``W*``."""
        return self.quadratic.solution.reshape(self.shape)

    def start(self) -> np.ndarray:
        """Every run starts at ``W = 0``."""
        return np.zeros(self.shape)

    def loss(self, weights: np.ndarray) -> float:
        """f(W) (its minimum is 0)."""
        return self.quadratic.loss(np.reshape(weights, -1)) - self.quadratic.minimum_value

    def gradient(self, weights: np.ndarray) -> np.ndarray:
        """The gradient at W, as a matrix."""
        return self.quadratic.grad(np.reshape(weights, -1)).reshape(self.shape)

    def newton_direction(self, weights: np.ndarray) -> np.ndarray:
        """``-H^-1 g`` as a matrix: ``-A^-1 G B^-1`` on the Kronecker problem."""
        q = self.quadratic
        gradient = np.reshape(self.gradient(weights), -1)
        return -(q.rotation @ ((q.rotation.T @ gradient) / q.eigenvalues)).reshape(self.shape)

    def probes(self, matched: bool) -> list[np.ndarray]:
        """Gradients at the ``m n`` points ``W* + E``, one per unit error ``E = e_i e_j^T``
        (``matched=False``), or per error ``H e_i e_j^T`` (``matched=True``, on the Kronecker
        problem ``A e_i e_j^T B``): the gradients ``H u`` and ``H^2 u`` over an orthonormal
        basis ``u`` of ``vec(W)``, whose outer products sum to ``H^2`` and ``H^4``."""
        q, power = self.quadratic, 2 if matched else 1
        columns = (q.rotation * q.eigenvalues**power) @ q.rotation.T
        return [columns[:, k].reshape(self.shape) for k in range(self.size)]
