"""Which rules step a lone vector: the lab's points (the race, the playground, the NumPy
stepper). Kept on the rules' floor, free of torch, so that listing them (the playground's
``--help``) loads nothing heavy."""

from __future__ import annotations

from descend.rules.spec import Rule


def vector_refusal(rule: Rule) -> str | None:
    """Why :class:`RuleStepper` cannot step ``rule`` on a vector (``None``: it can). A stage
    without matrix state that takes vectors (MARS's norm clip) runs on the whole vector; a
    stage on 2-D parameters only (Muon) or with matrix state (Shampoo, SOAP, PSGD-Kron: the
    torch class steps those, as the race does) does not."""
    stage = rule.stage
    if stage is None or (stage.matrices is None and stage.ndim in (None, 1)):
        return None
    needs = "matrix state" if stage.matrices is not None else f"{stage.ndim}-D parameters"
    return f"rule {rule.name!r} needs {needs} (a matrix stage); the lab's points are vectors"


__all__ = ["vector_refusal"]
