"""Architecture templates (``cimsim.arch``), all on one interface (:class:`cimsim.arch.base.Architecture`).

``get(name, **overrides)`` builds one (overrides by dotted path, ``adc.bits=6``, or shorthand, ``adc_bits=6``;
strings from the CLI's ``--set`` are converted to each parameter's type); ``names()`` lists them;
``register`` adds one (see CONTRIBUTING.md).
"""

from __future__ import annotations

from cimsim.arch.base import Architecture, Component, get, names, register
# registration order is the order 'cimsim archs' lists them in
from cimsim.arch.digital import DigitalReference
from cimsim.arch.isaac import Isaac
from cimsim.arch.hcim import Hcim  # noqa: E402,I001
from cimsim.arch.cascade import Cascade  # noqa: E402,I001
from cimsim.arch.neural_pim import NeuralPim  # noqa: E402,I001
from cimsim.arch.adcless_snn import AdclessSnn, SnnHpAdc  # noqa: E402,I001
from cimsim.arch.sme import Sme  # noqa: E402,I001
from cimsim.arch.params import ParamInfo

__all__ = ["get", "names", "register", "Architecture", "Component", "ParamInfo", "DigitalReference", "Isaac", "Hcim",
           "Cascade", "NeuralPim", "AdclessSnn", "SnnHpAdc", "Sme"]
