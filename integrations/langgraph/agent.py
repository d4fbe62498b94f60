"""A LangGraph agent (explicit StateGraph: model node <-> ToolNode) using the AwaRes tools.

    python integrations/langgraph/agent.py --fake                      # offline, scripted model
    python integrations/langgraph/agent.py IMAGE "QUESTION" --openai gpt-4o-mini

With ``--fake`` a scripted chat model calls view_image, then get_crops on region '3', then answers;
the script prints what each tool message carried, so it doubles as a smoke test of the wiring.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from awares_tool.adapters.langchain import AwaresToolkit

REPO = Path(__file__).resolve().parents[2]


def fake_model(image: str, image_id: str) -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    class Scripted(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # GenericFakeChatModel has none
            return self

    return Scripted(messages=iter([
        AIMessage("", tool_calls=[{"name": "view_image", "args": {"image": image}, "id": "1", "type": "tool_call"}]),
        AIMessage("", tool_calls=[{"name": "get_crops", "args": {"image": image_id, "regions": ["3"]}, "id": "2",
                                   "type": "tool_call"}]),
        AIMessage("Done: I looked at the low-res view and the bottom-right crop."),
    ]))


def build_graph(model: Any, tools: list) -> Any:
    bound = model.bind_tools(tools)

    def call_model(state: MessagesState) -> dict:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)  # tool calls -> "tools", else END
    graph.add_edge("tools", "model")
    return graph.compile()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image", nargs="?", type=Path, default=REPO / "examples" / "images" / "code_and_shapes.png")
    p.add_argument("question", nargs="?", default="What is in the bottom-right corner?")
    p.add_argument("--fake", action="store_true", help="use a scripted model (offline)")
    p.add_argument("--openai", default="gpt-4o-mini")
    args = p.parse_args()

    image = args.image.resolve()
    toolkit = AwaresToolkit(roots=[image.parent])
    if args.fake:
        model = fake_model(image.name, toolkit.service.view(image.name).result.image_id)
    else:
        from langchain_openai import ChatOpenAI

        model = ChatOpenAI(model=args.openai, temperature=0)
    app = build_graph(model, toolkit.get_tools())
    out = app.invoke({"messages": [HumanMessage(f"Image: {image.name}\nQuestion: {args.question}")]})
    for m in out["messages"]:
        if isinstance(m, ToolMessage):
            kinds = [b["type"] for b in m.content] if isinstance(m.content, list) else ["text"]
            print(f"tool {m.name}: status={m.status} blocks={kinds} artifact_keys={sorted(m.artifact or {})}")
    print("answer:", out["messages"][-1].content)


if __name__ == "__main__":
    main()
