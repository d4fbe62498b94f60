"""The crop episode: one image and question, a low-res first look, crops on request, the answer and its cost.

Modules, each importing only those above it:

* :mod:`.result`: the typed result of one question (rounds, token ledger, timings);
* :mod:`.ledger`: every image shown in an episode and its cost (RTR against the capped and native full view);
* :mod:`.episode`: :class:`CropEpisode`, the protocol itself (first view, requests checked against the crop
  set, crops cut from the original pixels); the loop, the GRPO environment, the tools and the trajectory
  builder all drive it;
* :mod:`.options`: :class:`CropOptions`, how one question is run;
* :mod:`.costs`: what every choice costs for one image (``awares tokens``);
* :mod:`.loop`: :func:`crop_on_demand`, the driver that runs an episode on a backend.
"""

from awares_tool.episode.episode import CropEpisode, CropsTurn
from awares_tool.episode.ledger import CropLedger, ShownImage
from awares_tool.episode.loop import acrop_on_demand, crop_on_demand, crop_on_demand_batch
from awares_tool.episode.options import CropOptions
from awares_tool.episode.result import CropResult, CropRound, Mode, TokenLedger, TurnTiming

__all__ = [
    "CropEpisode",
    "CropsTurn",
    "CropLedger",
    "ShownImage",
    "CropOptions",
    "crop_on_demand",
    "acrop_on_demand",
    "crop_on_demand_batch",
    "CropResult",
    "CropRound",
    "Mode",
    "TokenLedger",
    "TurnTiming",
]
