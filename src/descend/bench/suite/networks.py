"""Small-network problems of the suite: deep linear chains, saturated and scale-invariant
units, rare features, separable data, parity and a delayed signal through a recurrent net."""

from __future__ import annotations

import torch

from descend.bench.suite.core import Instance, SuiteProblem, leaf

CHAIN_DEPTH, CHAIN_WIDTH = 12, 4


def _chain(init_scale: float) -> SuiteProblem:
    """A product of ``CHAIN_DEPTH`` square matrices, each ``init_scale`` times the identity,
    fitted to a diagonal target (entries 0.5 to 2 in a random order; loss: squared error per
    entry). Every layer stays diagonal, so each diagonal entry is a scalar chain
    ``w ** depth`` whose gradient carries ``w ** (depth - 1)``."""

    def build(generator: torch.Generator, budget: int) -> Instance:
        layers = [
            leaf(init_scale * torch.eye(CHAIN_WIDTH, dtype=torch.float64))
            for _ in range(CHAIN_DEPTH)
        ]
        spectrum = torch.logspace(-0.3, 0.3, CHAIN_WIDTH, dtype=torch.float64)
        target = torch.diag(spectrum[torch.randperm(CHAIN_WIDTH, generator=generator)])
        start = float(((_product(layers).detach() - target) ** 2).mean())

        def loss(step: int) -> torch.Tensor:
            return ((_product(layers) - target) ** 2).mean()

        return Instance(layers, loss, lambda step: float(loss(step)) / start)

    product = init_scale**CHAIN_DEPTH
    growing = init_scale > 1
    return SuiteProblem(
        f"deep-linear-{'exploding' if growing else 'vanishing'}",
        f"a chain of {CHAIN_DEPTH} matrices at scale {init_scale} multiplies to {product:.2g}: "
        + (
            "the gradients are huge at the start and small at the solution, so no fixed "
            "step fits both"
            if growing
            else "every layer's gradient is scaled by the other layers' product and starts "
            "near zero"
        ),
        "loss below 1e-4 of its start within 600 steps",
        600,
        build,
        threshold=1e-4,
    )


def _product(layers: list[torch.Tensor]) -> torch.Tensor:
    result = layers[0]
    for layer in layers[1:]:
        result = layer @ result
    return result


DEEP_VANISHING = _chain(0.5)
DEEP_EXPLODING = _chain(1.5)


def _scale_invariant(generator: torch.Generator, budget: int) -> Instance:
    targets = [torch.randn(16, generator=generator, dtype=torch.float64) for _ in range(2)]
    targets = [target / target.norm() for target in targets]
    weights = [
        leaf(norm * torch.randn(16, generator=generator, dtype=torch.float64) / 4)
        for norm in (0.1, 10.0)
    ]

    def misalignment() -> torch.Tensor:
        return sum(
            1 - weight @ target / weight.norm()
            for weight, target in zip(weights, targets, strict=True)
        )

    return Instance(weights, lambda step: misalignment(), lambda step: float(misalignment()))


SCALE_INVARIANT = SuiteProblem(
    "scale-invariant",
    "the loss sees only each weight's direction (as after a normalization layer): the "
    "gradient is 1/||w|| and the effective step lr/||w||^2, so two weights at norms 0.1 and "
    "10 need step sizes 1e4 apart",
    "both weights within 1 - cos < 1e-4 of their target directions within 500 steps",
    500,
    _scale_invariant,
    threshold=1e-4,
)


def _saturated(generator: torch.Generator, budget: int) -> Instance:
    normal = torch.randn(4, generator=generator, dtype=torch.float64)
    normal = normal / normal.norm()
    inputs = torch.randn(64, 4, generator=generator, dtype=torch.float64)
    labels = torch.sign(inputs @ normal)
    weight = leaf(-12.0 * normal)

    def loss(step: int) -> torch.Tensor:
        return ((torch.tanh(inputs @ weight) - labels) ** 2).mean()

    return Instance([weight], loss, lambda step: float(loss(step)))


SATURATED = SuiteProblem(
    "saturated-unit",
    "a tanh unit starts saturated on the wrong side: its derivative 1 - tanh^2 is near "
    "zero, so the loss sits at its maximum with almost no gradient",
    "mean squared error below 0.05 (from about 3.5) within 500 steps",
    500,
    _saturated,
    threshold=0.05,
)

SPARSE_FEATURES, SPARSE_BATCH = 50, 32


def _sparse(generator: torch.Generator, budget: int) -> Instance:
    rates = 0.5 * 0.002 ** torch.linspace(0, 1, SPARSE_FEATURES, dtype=torch.float64)
    uniform = torch.rand(budget, SPARSE_BATCH, SPARSE_FEATURES, generator=generator)
    inputs = (uniform < rates.float()).double()
    truth = torch.randn(SPARSE_FEATURES, generator=generator, dtype=torch.float64)
    targets = inputs @ truth
    weight = leaf(torch.zeros(SPARSE_FEATURES, dtype=torch.float64))

    def loss(step: int) -> torch.Tensor:
        return 0.5 * ((inputs[step] @ weight - targets[step]) ** 2).mean()

    return Instance([weight], loss, lambda step: float((weight - truth).abs().max()))


SPARSE = SuiteProblem(
    "sparse-rare-features",
    "features seen in 0.1% of examples get 500x fewer gradient signals than common ones; a "
    "step size safe for the common features leaves the rare weights unlearned",
    "every weight within 0.1 of the truth after 1000 minibatch steps (features seen in 50% "
    "to 0.1% of examples)",
    1000,
    _sparse,
    threshold=0.1,
    check_every=50,
    judge_at_end=True,
)


def _separable(generator: torch.Generator, budget: int) -> Instance:
    normal = torch.randn(5, generator=generator, dtype=torch.float64)
    normal = normal / normal.norm()
    inputs = torch.randn(200, 5, generator=generator, dtype=torch.float64)
    margins = inputs @ normal
    keep = margins.abs() > 0.5
    inputs, labels = inputs[keep][:40], torch.sign(margins[keep][:40])
    weight = leaf(torch.zeros(5, dtype=torch.float64))

    def loss(step: int) -> torch.Tensor:
        return torch.nn.functional.softplus(-labels * (inputs @ weight)).mean()

    return Instance([weight], loss, lambda step: float(loss(step)))


SEPARABLE = SuiteProblem(
    "separable-logistic",
    "on separable data the logistic loss vanishes only as ||w|| grows without bound, and its "
    "gradient shrinks with the loss: gradient descent's loss falls as 1/t",
    "logistic loss below 1e-3 within 500 steps",
    500,
    _separable,
    threshold=1e-3,
)


def _parity(generator: torch.Generator, budget: int) -> Instance:
    bits = torch.tensor(
        [[(index >> bit) & 1 for bit in range(4)] for index in range(16)], dtype=torch.float64
    )
    inputs, labels = 2 * bits - 1, bits.sum(dim=1) % 2
    first = leaf(torch.randn(4, 16, generator=generator, dtype=torch.float64) / 2)
    bias = leaf(torch.zeros(16, dtype=torch.float64))
    second = leaf(torch.randn(16, generator=generator, dtype=torch.float64) / 4)

    def loss(step: int) -> torch.Tensor:
        logits = torch.tanh(inputs @ first + bias) @ second
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)

    return Instance([first, bias, second], loss, lambda step: float(loss(step)))


PARITY = SuiteProblem(
    "xor-parity",
    "4-bit parity (XOR of four inputs) has no linear signal: every input's correlation with "
    "the label is zero, so the net must memorize from a flat start",
    "cross-entropy below 0.02 on all 16 patterns (every one right) within 1000 steps",
    1000,
    _parity,
    threshold=0.02,
)

DELAY = 20


def _delayed(generator: torch.Generator, budget: int) -> Instance:
    def sequences(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        signs = torch.randint(0, 2, (count,), generator=generator).double()
        noise = 0.1 * torch.randn(count, DELAY, 1, generator=generator, dtype=torch.float64)
        noise[:, 0, 0] = 2 * signs - 1
        return noise, signs

    train = [sequences(32) for _ in range(budget)]
    held_out = sequences(256)
    cell = torch.nn.RNN(1, 16, batch_first=True, dtype=torch.float64)
    readout = torch.nn.Linear(16, 1, dtype=torch.float64)
    params = [*cell.parameters(), *readout.parameters()]

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        states, _ = cell(inputs)
        return readout(states[:, -1]).squeeze(1)

    def loss(step: int) -> torch.Tensor:
        inputs, signs = train[step]
        return torch.nn.functional.binary_cross_entropy_with_logits(logits(inputs), signs)

    def error(step: int) -> float:
        inputs, signs = held_out
        return float(((logits(inputs) > 0).double() != signs).double().mean())

    return Instance(params, loss, error)


DELAYED = SuiteProblem(
    "delayed-signal-rnn",
    f"the loss depends only on the first of {DELAY} inputs, so its gradient passes through "
    f"{DELAY} tanh steps and fades on the way (vanishing gradients through time)",
    "a tanh RNN classifies 256 held-out sequences without error within 400 steps",
    400,
    _delayed,
    threshold=0.0,
    check_every=20,
)

NETWORKS = (
    DEEP_VANISHING,
    DEEP_EXPLODING,
    SCALE_INVARIANT,
    SATURATED,
    SPARSE,
    SEPARABLE,
    PARITY,
    DELAYED,
)
