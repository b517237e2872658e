"""`tokrec tokens`: show the text (LLM tokens) of one item or one user, its tokens with ids, and the count."""

from __future__ import annotations

import argparse
import sys

from tokrec.cli._args import positive_int
from tokrec.cli._data import ITEMS_HELP, add_loading_options, load_from_args
from tokrec.cli.embed import add_encoder_args, load_items_frame
from tokrec.errors import ConfigError, DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tokens",
        help="show the text and the tokens of one item or one user's history",
        description=(
            "With --item: the item's text under the template. With --interactions and --user: the user's "
            "history text within the token budget (most recent events kept). Prints the text, each token "
            "with its id, and the count against the budget, using the encoder's own tokenizer."
        ),
    )
    p.add_argument("--items", required=True, help=ITEMS_HELP)
    p.add_argument("--item", help="an item id")
    p.add_argument("--interactions", help="interaction log (with --user)")
    p.add_argument("--user", help="a user id (with --interactions)")
    p.add_argument(
        "--budget",
        type=positive_int,
        default=None,
        help="user-history token budget (default: the encoder's max length)",
    )
    add_encoder_args(p, cache=False)
    add_loading_options(p)
    p.set_defaults(func=run)


def _text(args: argparse.Namespace, enc) -> tuple[str, str]:
    from tokrec.features import item_texts

    if args.item is not None:
        items = load_items_frame(args.items, args)
        hit = items.index[items["item_id"] == str(args.item)]
        if not len(hit):
            raise DataError(f"item {args.item!r} not in the catalog", file=args.items, column="item_id")
        return f"item {args.item}", item_texts(items.loc[hit], args.template)[0]
    from tokrec.text import UserTemplate

    ds = load_from_args(args, args.items, args.interactions)
    if str(args.user) not in ds.user_vocab:
        raise DataError(f"user {args.user!r} has no interactions", file=args.interactions, column="user_id")
    tpl = UserTemplate(args.template, budget=args.budget or enc.max_length)
    return f"user {args.user}", tpl.render_many(ds, users=[str(args.user)], count_tokens=enc.count_tokens)[0]


def run(args: argparse.Namespace) -> int:
    if (args.item is None) == (args.user is None):
        raise ConfigError("give exactly one of --item or --user")
    if args.user is not None and not args.interactions:
        raise ConfigError("--user needs --interactions")
    from tokrec.cli.embed import encoder_from_args

    args.no_cache = True
    enc = encoder_from_args(args)
    what, text = _text(args, enc)
    tokens, ids = enc.tokenize(text)
    full = enc.count_tokens([text])[0]
    budget = args.budget or enc.max_length
    print(f"{what}: {text}")
    print("tokens: " + " ".join(f"{t}({i})" for t, i in zip(tokens, ids, strict=True)))
    if full > enc.max_length:
        status = f"truncated to {enc.max_length} by the encoder"
    elif full > budget:
        status = f"over the budget by {full - budget}"
    else:
        status = "fits"
    print(f"count: {full} tokens (with special tokens); budget {budget}; {status}; model {enc.describe()}")
    sys.stdout.flush()
    return 0
