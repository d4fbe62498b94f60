"""``awares-mcp``: the AwaRes tools as an MCP server (official ``mcp`` SDK 2.x, extra ``mcp``).

Tools: ``list_regions``, ``view_image`` (low-res view as image content + image id), ``get_crops``
(high-res crops as image contents) and ``ask_image`` (the whole AwaRes loop with the server's
backend). Every tool is a thin conversion of :class:`~awares_tool.adapters.common.ImageService`,
which owns the security policy (allowed roots, URL policy, limits). A failing call comes back as an
``is_error`` result with the reason, never as a crashed server.

Run it::

    awares-mcp --root ~/images                        # stdio, for Claude Desktop / Cursor / VS Code
    awares-mcp --root ~/images --transport http --port 8765 --token "$SECRET"

Logs go to stderr only: on stdio, stdout carries the protocol.
"""

import argparse
import logging
from pathlib import Path
import sys
from typing import Annotated, Any, Literal

from awares_tool.adapters.common import (
    AdapterConfig,
    AskResult,
    CropsResult,
    McpImageRef,
    ImageService,
    Question,
    RegionNames,
    RegionsResult,
    ViewResult,
)
from awares_tool.backends.spec import ATTN_HELP, DEVICE_HELP, DTYPE_HELP, spec_with_options
from awares_tool.adapters.http_guard import RequestGuard, is_loopback, read_token, run_http
from awares_tool.errors import AwaresError, require_extra
from awares_tool.images import ImageLimits

__all__ = ["build_server", "build_http_app", "service_from_args", "main", "TOKEN_ENV"]

logger = logging.getLogger(__name__)

TOKEN_ENV = "AWARES_MCP_TOKEN"
"""Environment variable holding the bearer token for HTTP (preferred over ``--token`` on shared hosts)."""



def build_server(service: ImageService, *, name: str = "awares",
                 delivery: Literal["inline", "link", "text"] = "inline") -> Any:
    """An ``MCPServer`` exposing ``service`` as the four AwaRes tools.

    Args:
        service: Roots, limits, crop set and backend of this server.
        name: The server name clients show.
        delivery: How images come back: ``inline`` (an image block, a text block and a resource link per image),
            ``link`` (text and a resource link: for clients that drop images in tool results, which read the
            resource instead) or ``text`` (no image tools at all: ``ask_image`` answers with the server's own model).

    Returns:
        A ``mcp.server.mcpserver.MCPServer``; call ``.run()`` or serve :func:`build_http_app`.
    """
    require_extra("mcp.server.mcpserver", "mcp", package="mcp")
    from mcp.server.mcpserver import Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import CallToolResult, ResourceLink, TextContent, ToolAnnotations

    server = MCPServer(
        name,
        instructions="Look at an image cheaply: call view_image first, then get_crops only for the regions whose "
        "detail you need (or ask_image to have a vision model answer a question).",
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=service.config.limits.allow_urls)

    def run(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except AwaresError as e:  # an anticipated failure: the model reads the reason
            raise ToolError(str(e)) from e
        except Exception as e:  # a bug or an unforeseen input: the call fails, the server keeps serving
            logger.exception("%s failed unexpectedly", getattr(fn, "__name__", fn))
            raise ToolError(f"internal error ({type(e).__name__}): {e}") from e

    fmt = service.config.image_format
    mime = f"image/{fmt}"

    def link(image_id: str, view: str, caption: str) -> ResourceLink:
        return ResourceLink(type="resource_link", uri=f"awares://image/{image_id}/{view}", name=f"{image_id}/{view}",
                            description=caption, mime_type=mime)

    def blocks(img: Any, image_id: str, view: str) -> list[Any]:
        """The text, the image (unless delivery is 'link') and a link the client can read the image from."""
        out: list[Any] = [TextContent(type="text", text=img.caption)]
        if delivery == "inline":
            out.append(Image(data=img.data, format=fmt).to_image_content())
        out.append(link(image_id, view, img.caption))
        return out

    def list_regions() -> RegionsResult:
        return service.regions()

    def view_image(image: McpImageRef) -> Annotated[CallToolResult, ViewResult]:
        out = run(service.view, image)
        content = blocks(out.image, out.result.image_id, "lowres")
        content[0] = TextContent(type="text", text=out.image.caption + f" image_id={out.result.image_id}")
        return CallToolResult(content=content, structured_content=out.result.model_dump(mode="json"))

    def get_crops(image: McpImageRef, regions: RegionNames) -> Annotated[CallToolResult, CropsResult]:
        out = run(service.crops, image, regions)
        content: list[Any] = []
        for info, img in zip(out.result.crops, out.images):
            content += blocks(img, out.result.image_id, f"crop/{info.region}")
        return CallToolResult(content=content, structured_content=out.result.model_dump(mode="json"))

    def ask_image(image: McpImageRef, question: Question) -> AskResult:
        return run(service.ask, image, question)

    @server.resource("awares://image/{image_id}/lowres", mime_type=mime,
                     description="The low-resolution view of an opened image (what view_image returns).")
    def lowres_resource(image_id: str) -> bytes:
        return run(service.view, image_id).image.data

    @server.resource("awares://image/{image_id}/crop/{region}", mime_type=mime,
                     description="A high-resolution crop of an opened image (what get_crops returns).")
    def crop_resource(image_id: str, region: str) -> bytes:
        return run(service.crops, image_id, [region]).images[0].data

    tools = (list_regions, view_image, get_crops, ask_image) if delivery != "text" else (list_regions, ask_image)
    for fn in tools:
        server.add_tool(fn, description=service.describe(fn.__name__), annotations=read_only)
        _forbid_extra_arguments(server, fn.__name__)
    return server


def _forbid_extra_arguments(server: Any, name: str) -> None:
    """Publish ``additionalProperties: false`` and refuse unknown arguments, as schemas.py declares.

    The SDK (mcp 2.3) builds each tool's argument model from the function signature and ignores extra keys, so a
    misspelt argument (``"zoom": 4``) would be dropped silently; the LangChain tools refuse it. There is no public
    hook for the argument model, so the registered tool's model is replaced by a strict subclass.
    """
    from pydantic import ConfigDict

    tool = server._tool_manager.get_tool(name)  # mcp 2.3 exposes no public accessor for a registered Tool
    base = tool.fn_metadata.arg_model
    strict = type(base.__name__, (base,), {"model_config": ConfigDict(**{**base.model_config, "extra": "forbid"})})
    tool.fn_metadata = tool.fn_metadata.model_copy(update={"arg_model": strict})
    tool.parameters = strict.model_json_schema(by_alias=True)


def build_http_app(server: Any, *, token: str | None = None, host: str = "127.0.0.1", path: str = "/mcp",
                   allowed_origins: tuple[str, ...] = (), allowed_hosts: tuple[str, ...] = ()) -> Any:
    """The streamable-HTTP ASGI app of ``server`` behind :class:`~awares_tool.adapters.http_guard.RequestGuard`.

    The SDK checks Host and Origin only on loopback binds; the guard checks the bearer token (a shared secret is
    what a local or single-user deployment needs; the SDK's own auth is OAuth) and the Origin on every bind, so a
    web page cannot drive the server from a browser on the operator's network.
    """
    app = server.streamable_http_app(streamable_http_path=path, host=host)
    return RequestGuard(app, token=token, allowed_origins=allowed_origins, allowed_hosts=allowed_hosts)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="awares-mcp", description="Serve the AwaRes image tools (view_image, get_crops, ask_image) over MCP."
    )
    p.add_argument("--root", action="append", default=[], metavar="[NAME=]DIR",
                   help="folder whose images may be opened (repeatable); nothing outside the roots is readable. "
                        "Tools and errors call it NAME (default: the folder's name), not its absolute path")
    p.add_argument("--show-root-paths", action="store_true",
                   help="name the roots by their absolute paths in tool descriptions and errors")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                   help="stdio (for desktop clients) or streamable HTTP")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8765, help="HTTP port")
    p.add_argument("--path", default="/mcp", help="HTTP endpoint path")
    p.add_argument("--token", default=None,
                   help=f"bearer token required on HTTP (prefer ${TOKEN_ENV} or --token-file: a command line is "
                        "visible in ps); required for a non-loopback --host")
    p.add_argument("--token-file", default=None, metavar="PATH", help="read the bearer token from this file")
    p.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                   help="browser origin allowed to call the HTTP server (repeatable; scheme://host:* for any port); "
                        "requests from any other origin are refused")
    p.add_argument("--allowed-host", action="append", default=[], metavar="HOST",
                   help="Host header values accepted (repeatable; host:* for any port); default: any")
    p.add_argument("--max-connections", type=int, default=64, help="HTTP connections at once (503 beyond)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a connection may take to send a request's headers before it is closed")
    p.add_argument("--image-delivery", choices=("inline", "link", "text"), default="inline",
                   help="inline: each image as an image block, a text block and a resource link; link: text and a "
                        "resource link only (clients that drop images in tool results read the resource); text: no "
                        "image tools, ask_image answers with the server's model (needs --backend)")
    p.add_argument("--allow-urls", action="store_true",
                   help="allow http(s) image URLs (public hosts only, size and time limited)")
    p.add_argument("--allow-url-network", action="append", default=[], metavar="CIDR",
                   help="with --allow-urls: a non-public network downloads may reach anyway, e.g. an internal "
                        "image store 10.1.0.0/16 (repeatable; none by default)")
    p.add_argument("--url-timeout", type=float, default=10.0,
                   help="with --allow-urls: seconds one whole download may take, redirects included")
    p.add_argument("--backend", default=None,
                   help="backend spec for ask_image, e.g. transformers:PATH (default: the embedded model)")
    p.add_argument("--device", default=None, help="ask_image model: " + DEVICE_HELP)
    p.add_argument("--dtype", default=None, help="ask_image model: " + DTYPE_HELP)
    p.add_argument("--attn", default=None, help="ask_image model: " + ATTN_HELP)
    p.add_argument("--crop-set", default="awares9", help="crop set name or file")
    p.add_argument("--lowres", default=None, help="low-res policy, e.g. 0.5 or 512px (default: half each side)")
    p.add_argument("--max-pixels", type=int, default=50_000_000, help="refuse images with more pixels")
    p.add_argument("--max-mb", type=float, default=64.0, help="refuse image files larger than this (MiB)")
    p.add_argument("--max-crops", type=int, default=4, help="most regions per get_crops call")
    p.add_argument("--send-max-pixels", type=int, default=1_605_632,
                   help="downscale every returned image to at most this many pixels")
    p.add_argument("--store-mb", type=int, default=512, help="memory budget of the image store (MiB)")
    p.add_argument("--decode-budget-mp", type=float, default=150.0,
                   help="megapixels decoded at once over all concurrent calls (about 3 MB each); calls wait beyond it")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def service_from_args(args: argparse.Namespace) -> ImageService:
    """The :class:`ImageService` that ``awares-mcp`` serves, from its parsed arguments (nothing loads yet).

    Raises:
        AwaresError: A bad root, limit or backend spec (``--device`` / ``--dtype`` / ``--attn`` go into the
            spec of ``--backend``, checked here).
    """
    from awares_tool.images.store import ImageStore

    limits = ImageLimits(max_pixels=args.max_pixels, max_bytes=int(args.max_mb * 1024 * 1024),
                         allow_urls=args.allow_urls, url_allow_networks=tuple(args.allow_url_network),
                         url_timeout_s=args.url_timeout)
    dirs = [r.partition("=")[2] if "=" in r else r for r in args.root]
    names = [r.partition("=")[0] if "=" in r else Path(d).expanduser().resolve().name for r, d in zip(args.root, dirs)]
    config = AdapterConfig(roots=tuple(dirs), root_names=tuple(names), show_root_paths=args.show_root_paths,
                           limits=limits, max_crops=args.max_crops,
                           max_image_pixels=args.send_max_pixels, crop_set=args.crop_set, lowres=args.lowres,
                           decode_budget_pixels=max(1, int(args.decode_budget_mp * 1_000_000)))
    backend = spec_with_options(args.backend, device=args.device, dtype=args.dtype, attn=args.attn)
    return ImageService(config, store=ImageStore(args.store_mb * 1024 * 1024, limits=limits), backend=backend)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``awares-mcp``."""
    args = _parser().parse_args(argv)
    # Configure stderr logging before the SDK does (its basicConfig then leaves ours alone):
    # on stdio, anything written to stdout would corrupt the protocol stream.
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        service = service_from_args(args)
        server = build_server(service, delivery=args.image_delivery)
    except (ValueError, AwaresError) as e:
        print(f"awares-mcp: error: {e}", file=sys.stderr)
        return 2
    if not service.roots:
        logger.warning("no --root given: file paths are refused, only %s",
                       "URLs can be opened" if args.allow_urls else "nothing can be opened")
    if args.transport == "stdio":
        logger.info("awares-mcp on stdio, roots: %s", ", ".join(map(str, service.roots)) or "none")
        server.run("stdio")
        return 0
    try:
        token = read_token(args.token, env=TOKEN_ENV, file=args.token_file)
    except ValueError as e:
        print(f"awares-mcp: error: {e}", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not token:
        print(f"awares-mcp: error: refusing to serve on {args.host} without a bearer token: anyone who can reach it "
              f"could read the roots. Set ${TOKEN_ENV} or --token-file (or bind to 127.0.0.1)", file=sys.stderr)
        return 2
    app = build_http_app(server, token=token, host=args.host, path=args.path,
                         allowed_origins=tuple(args.allowed_origin), allowed_hosts=tuple(args.allowed_host))
    logger.info("awares-mcp on http://%s:%d%s (auth: %s), roots: %s", args.host, args.port, args.path,
                "bearer token" if token else "none", ", ".join(map(str, service.roots)) or "none")
    run_http(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
             max_connections=args.max_connections, header_timeout_s=args.header_timeout)
    return 0

if __name__ == "__main__":
    sys.exit(main())
