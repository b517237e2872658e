"""`tokrec serve`: the HTTP API and web page for a model directory written by `tokrec fit`."""

from __future__ import annotations

import argparse
import os

from tokrec.cli._args import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve recommendations over HTTP (API + web page)",
        description=(
            "Starts the FastAPI app with uvicorn: POST /recommend, /events, /items; GET /items/{id}/similar, "
            "/health, /metrics; the web page at /; OpenAPI docs at /docs. Events and items added through the "
            "API are logged to SQLite (MODEL_DIR.state.sqlite beside the model directory, or --state) and replayed "
            "at start-up; a refitted MODEL_DIR is swapped in without a restart."
        ),
    )
    p.add_argument("--model", required=True, help="model directory written by `tokrec fit`")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--api-key",
        default=None,
        help="require this X-API-Key on POST /events and /items (default: $TOKREC_API_KEY, else none)",
    )
    p.add_argument(
        "--redis-url", default=None, help="share online state through Redis, e.g. redis://127.0.0.1:6379/0"
    )
    p.add_argument("--redis-prefix", default="tokrec", help="Redis key prefix (default tokrec)")
    p.add_argument(
        "--state",
        default=None,
        help="SQLite state log (default MODEL_DIR.state.sqlite, beside the model directory)",
    )
    p.add_argument("--no-persist", action="store_true", help="keep online state in memory only")
    p.add_argument(
        "--no-preload-encoder",
        action="store_true",
        help="load the encoder for new items on the first POST /items, not in the background at start-up",
    )
    p.add_argument(
        "--ann", choices=("auto", "yes", "no"), default="auto", help="ANN index (auto: >= 20,000 items)"
    )
    p.add_argument("--ann-kind", choices=("ivf", "hnsw"), default="ivf", help="ANN index type (default ivf)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default 1); more than one needs --redis-url, through which they share state",
    )
    p.add_argument(
        "--policy",
        default=None,
        help='serve through a bandit policy: JSON (or a JSON file) of its options, e.g. \'{"policy": "linucb", '
        '"mode": "shared"}\' (policies: linucb, ts, egreedy); it learns from every POST /events',
    )
    p.add_argument(
        "--explore-share",
        type=float,
        default=None,
        help="with --policy: share of each list's slots given to exploration (default 0.2; per request: explore_share)",
    )
    p.add_argument(
        "--rerank",
        default=None,
        help="re-rank every list: mmr:W, dpp:W, sdpp:W, calibration:W, popularity:W, propensity:W, "
        "tail:W (a long-tail share of at least W where the candidates hold enough)[@N], chained with + "
        "(per request: rerank; with --policy it needs --explore-share 0)",
    )
    p.add_argument("--max-k", type=int, default=None, help="largest k a request may ask for (default 1000)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="BLAS threads per server process (default 1: requests run in parallel rather than each on all cores)",
    )
    p.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    from tokrec.serve.app import ServeSettings

    opts: dict[str, object] = {
        "api_key": args.api_key or os.environ.get("TOKREC_API_KEY") or None,
        "redis_url": args.redis_url,
        "redis_prefix": args.redis_prefix,
        "persist": not args.no_persist,
        "preload_encoder": not args.no_preload_encoder,
        "ann": {"auto": None, "yes": True, "no": False}[args.ann],
        "ann_kind": args.ann_kind,
    }
    if args.state:
        opts["state_path"] = args.state
    if args.max_k is not None:
        opts["max_k"] = args.max_k
    if args.rerank:
        from tokrec.rerank import parse_rerank

        parse_rerank(args.rerank, auto=False)  # a bad spec fails before the server starts
        opts["rerank"] = args.rerank
    if args.policy:
        from tokrec.bandits import PolicyConfig
        from tokrec.config import read_json_config, validate_config

        opts["policy"] = validate_config(
            PolicyConfig, read_json_config(args.policy), what="--policy"
        ).model_dump()
        share = 0.2 if args.explore_share is None else args.explore_share
        opts["explore_share"] = share
        if args.rerank and share > 0:  # a per-request choice can still switch either one off
            from tokrec.errors import ConfigError

            raise ConfigError(
                "--rerank and --policy's exploration (--explore-share, default 0.2) do not combine: "
                "give --explore-share 0 to re-rank the policy's lists, or leave out --rerank"
            )
    elif args.explore_share is not None:
        from tokrec.errors import ConfigError

        raise ConfigError("--explore-share needs --policy")
    try:
        return ServeSettings.model_validate(opts)
    except Exception as e:
        from tokrec.errors import ConfigError

        raise ConfigError(f"invalid option: {e}") from e


def run(args: argparse.Namespace) -> int:
    import json
    import socket
    import sys

    import uvicorn

    from tokrec.errors import ConfigError

    settings = settings_from_args(args)
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.workers > 1 and not settings.redis_url:
        raise ConfigError(
            "--workers > 1 needs --redis-url: the processes share events and items through Redis"
        )
    if not settings.api_key and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"tokrec serve: warning: listening on {args.host} without --api-key: anyone who reaches this port "
            "can add events and items (POST /events, /items)",
            file=sys.stderr,
        )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))  # before anything is loaded or printed: a taken port fails at once
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from e
    sock.set_inheritable(True)
    os.environ["TOKREC_SERVE_MODEL"] = str(args.model)
    os.environ["TOKREC_SERVE_SETTINGS"] = json.dumps(settings.model_dump(mode="json"))
    if args.threads < 1:
        raise ConfigError("--threads must be at least 1")
    os.environ["TOKREC_SERVE_THREADS"] = str(args.threads)
    if args.workers == 1:
        from tokrec.serve.app import app_from_env

        # loaded (and failing, on a bad model directory) before the command says where it is served
        config = uvicorn.Config(app_from_env(), log_level=args.log_level, access_log=False)
    else:  # each worker process builds the app from the environment
        config = uvicorn.Config(
            "tokrec.serve.app:app_from_env",
            factory=True,
            workers=args.workers,
            log_level=args.log_level,
            access_log=False,
        )
    print(f"tokrec serve: http://{args.host}:{sock.getsockname()[1]}/ (API docs at /docs)", flush=True)
    if args.workers == 1:
        uvicorn.Server(config).run(sockets=[sock])
    else:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
    return 0
