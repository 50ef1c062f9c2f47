"""Frozen metadata shared by every component kind."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentMeta:
    """Where a component comes from and where its defaults were taken from.

    ``defaults_source`` names the file or paper section the default hyperparameters were read
    from (``msabench info`` shows it), e.g. ``"thuiar/MMSA config_regression.json (mosi)"``.
    """

    summary: str
    paper: str = ""
    citation: str = ""
    license: str = ""
    defaults_source: str = ""
    url: str = ""
