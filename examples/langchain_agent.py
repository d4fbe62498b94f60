"""A LangChain agent that looks at an image cheaply and zooms in with AwaRes crops (not run in CI).

The agent's own multimodal model sees the low-res view from ``view_image`` and calls ``get_crops``
for the regions whose detail it needs; the crops come back as image blocks in the tool message.

    pip install 'awares[langchain]' langchain-openai        # or langchain-ollama
    export OPENAI_API_KEY=...
    python examples/langchain_agent.py examples/images/code_and_shapes.png "What does the code print?"
    python examples/langchain_agent.py IMAGE QUESTION --ollama qwen2.5vl:7b   # a local model via Ollama

The provider must accept images inside tool results (OpenAI-style APIs do). With a text-only model,
pass ``--ask BACKEND`` to give it ``ask_image`` instead, which runs the AwaRes loop with that backend.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

from awares_tool.adapters.langchain import AwaresToolkit


def build_model(args: argparse.Namespace):
    if args.ollama:
        from langchain_ollama import ChatOllama

        return ChatOllama(model=args.ollama, temperature=0)
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=args.openai, temperature=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image", type=Path)
    p.add_argument("question")
    p.add_argument("--openai", default="gpt-4o-mini", help="OpenAI chat model (default)")
    p.add_argument("--ollama", default=None, help="use this Ollama model instead")
    p.add_argument("--ask", default=None, help="backend spec for ask_image, e.g. transformers:PATH")
    args = p.parse_args()

    image = args.image.resolve()
    toolkit = AwaresToolkit(roots=[image.parent], backend=args.ask)
    agent = create_agent(
        build_model(args),
        tools=toolkit.get_tools(),
        system_prompt="You answer questions about images. Call view_image first; call get_crops only for the "
        "regions whose detail you cannot read in the low-resolution view.",
    )
    result = agent.invoke({"messages": [HumanMessage(f"Image: {image.name}\nQuestion: {args.question}")]})
    for message in result["messages"]:
        artifact = getattr(message, "artifact", None)
        if artifact:  # the boxes and token costs the model never sees
            print(f"[{message.name}] {artifact}")
    print(result["messages"][-1].content)


if __name__ == "__main__":
    main()
