"""The offline "models" behind the nodes: deterministic stand-ins for LLM calls.

Swap any of these for a real agent (Claude, GPT, a local model): the nodes around them do not
change. The coder's first draft of the evaluator leaves a TODO, so the architect's review has
something to send back.
"""

from __future__ import annotations

from typing import Any

GOAL = "a calculator for arithmetic expressions"
EXPRESSION = "2 * (3 + 4) - 10 / 4"

PLAN: list[dict[str, Any]] = [
    {
        "title": "implement the tokenizer",
        "spec": {
            "file": "calc/tokenizer.py",
            "function": "tokenize",
            "doc": "split an expression into numbers and operators",
        },
    },
    {
        "title": "implement the parser",
        "spec": {
            "file": "calc/parser.py",
            "function": "parse",
            "doc": "turn tokens into reverse Polish notation (shunting-yard)",
        },
    },
    {
        "title": "implement the evaluator",
        "spec": {
            "file": "calc/evaluator.py",
            "function": "evaluate",
            "doc": "evaluate reverse Polish notation",
        },
    },
]

SOURCES = {
    "tokenize": """
def tokenize(text):
    tokens, number = [], ""
    for ch in text + " ":
        if ch.isdigit() or ch == ".":
            number += ch
            continue
        if number:
            tokens.append(float(number))
            number = ""
        if ch in "+-*/()":
            tokens.append(ch)
        elif not ch.isspace():
            raise ValueError(f"unexpected character {ch!r}")
    return tokens
""",
    "parse": """
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def parse(tokens):
    output, stack = [], []
    for token in tokens:
        if isinstance(token, float):
            output.append(token)
        elif token == "(":
            stack.append(token)
        elif token == ")":
            while stack[-1] != "(":
                output.append(stack.pop())
            stack.pop()
        else:
            while stack and stack[-1] != "(" and PRECEDENCE[stack[-1]] >= PRECEDENCE[token]:
                output.append(stack.pop())
            stack.append(token)
    return output + stack[::-1]
""",
    "evaluate": """
def evaluate(rpn):
    stack = []
    for token in rpn:
        if isinstance(token, float):
            stack.append(token)
            continue
        b, a = stack.pop(), stack.pop()
        # GUARD
        if token == "+":
            stack.append(a + b)
        elif token == "-":
            stack.append(a - b)
        elif token == "*":
            stack.append(a * b)
        else:
            stack.append(a / b)
    return stack[0]
""",
}


def write_code(function: str, notes: str | None = None) -> str:
    """The coder's model: source for ``function``; review ``notes`` get addressed."""
    source = SOURCES[function].lstrip()
    if function == "evaluate":
        guard = (
            'if token == "/" and b == 0:\n'
            '            raise ZeroDivisionError("division by zero in the expression")'
            if notes
            else "# TODO: guard against division by zero"
        )
        source = source.replace("# GUARD", guard)
    return source


def review(source: str) -> str | None:
    """The architect's model: review notes, or None to approve."""
    if "TODO" in source:
        return "resolve the TODO: raise a clear error on division by zero"
    return None


def integrate(sources: dict[str, str], expression: str = EXPRESSION) -> float:
    """Put the files together and run them on ``expression``."""
    namespace: dict[str, Any] = {}
    for source in sources.values():
        exec(source, namespace)  # our own generated code, in an example
    value: float = namespace["evaluate"](namespace["parse"](namespace["tokenize"](expression)))
    return value
