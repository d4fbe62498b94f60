"""The crop episode: one image and question, a low-res first look, crops on request, the answer and its cost.

Modules: :mod:`.result` (the typed result of one episode: rounds, token ledger, timings),
:mod:`.costs` (what every choice costs for one image), :mod:`.loop` (:func:`crop_on_demand`, the
driver that runs an episode on a backend).
"""

from awares_tool.episode.loop import acrop_on_demand, crop_on_demand, crop_on_demand_batch
from awares_tool.episode.result import CropResult, CropRound, Mode, TokenLedger, TurnTiming

__all__ = [
    "crop_on_demand",
    "acrop_on_demand",
    "crop_on_demand_batch",
    "CropResult",
    "CropRound",
    "Mode",
    "TokenLedger",
    "TurnTiming",
]
