"""The names people type for init schemes, and suggestions by meaning before spelling.

Papers, Keras and PyTorch name the same schemes differently: He is Kaiming (and MSRA), Xavier
is Glorot. Those names are accepted as aliases and resolved to the registry's (canonical) name
when a config is validated, so records and tables always carry the canonical name:

    he, kaiming, kaiming_normal, msra   -> he_normal      (He et al. 2015 use a normal draw)
    kaiming_uniform                     -> he_uniform
    xavier, glorot, glorot_uniform      -> xavier_uniform (Glorot & Bengio 2010's "normalized
                                                           initialization" is uniform; Keras's
                                                           default too)
    glorot_normal                       -> xavier_normal
    lecun                               -> lecun_normal   (LeCun et al. 1998; Keras, SELU)
    default, pytorch, torch             -> torch_default  (nn.Linear's own init)

An unknown name is first read for its meaning (`kaiming_gaussian` -> he_normal: words are mapped
through `WORDS`), and only then matched by spelling (difflib): spelling alone once suggested
`mean1_normal`, the exploding failure case, for `kaiming_normal`.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection

ALIASES: dict[str, str] = {
    "he": "he_normal", "kaiming": "he_normal", "kaiming_normal": "he_normal",
    "msra": "he_normal", "kaiming_uniform": "he_uniform",
    "xavier": "xavier_uniform", "glorot": "xavier_uniform", "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal",
    "lecun": "lecun_normal",
    "default": "torch_default", "pytorch": "torch_default", "torch": "torch_default",
}

# Words inside a name, mapped to the registry's words: kaiming_gaussian -> he_normal.
WORDS: dict[str, str] = {
    "kaiming": "he", "msra": "he", "glorot": "xavier", "gaussian": "normal", "randn": "normal",
    "gauss": "normal", "rand": "uniform", "pytorch": "torch", "ortho": "orthogonal",
    "orthonormal": "orthogonal", "zero": "zeros", "const": "constant", "truncated": "truncated",
    "trunc": "truncated", "edge": "critical", "chaos": "critical", "mean1": "mean1",
}
_NOISE = ("init", "initialization", "initializer", "nn", "torch_nn_init")


def canonical(name: str, known: Collection[str]) -> str | None:
    """The registry name `name` stands for (itself, or what its alias means), else None."""
    if name in known:
        return name
    target = ALIASES.get(name)
    return target if target in known else None


def _words(name: str) -> list[str]:
    text = name.strip().lower().replace("-", "_").replace(".", "_").replace(" ", "_")
    return [w for w in text.split("_") if w and w not in _NOISE]


def suggest(name: str, known: Collection[str]) -> str | None:
    """A registry name that `name` probably means: by meaning first, then by spelling."""
    words = _words(name)
    for candidate in ("_".join(words), "_".join(WORDS.get(w, w) for w in words)):
        hit = canonical(candidate, known)
        if hit is not None:
            return hit
    meant = "_".join(WORDS.get(w, w) for w in words)
    close = difflib.get_close_matches(meant, [*known, *ALIASES], n=1)
    return canonical(close[0], known) if close else None


def aliases_of(name: str) -> list[str]:
    """The aliases that resolve to registry name `name`, sorted."""
    return sorted(a for a, target in ALIASES.items() if target == name)
