"""Agent adapters: the AwaRes tools for agent frameworks.

* :mod:`.common`: what every adapter shares (argument types, image resolution under allowed roots,
  the URL policy, limits and the result payloads). Needs only the core dependencies.
* :mod:`.langchain`: LangChain tools and :class:`~awares_tool.adapters.langchain.AwaresToolkit`
  (extra ``langchain``).
* :mod:`.mcp_server`: the ``awares-mcp`` server on the official MCP SDK (extra ``mcp``).

The framework modules are not imported here, so ``import awares_tool.adapters`` stays light.
"""

from __future__ import annotations

from awares_tool.adapters.common import AdapterConfig, ImageService

__all__ = ["AdapterConfig", "ImageService"]
