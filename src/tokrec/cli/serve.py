"""`tokrec serve`: the HTTP API and web page for a model directory written by `tokrec fit`."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve recommendations over HTTP (API + web page)",
        description=(
            "Starts the FastAPI app with uvicorn: POST /recommend, /events, /items; GET /items/{id}/similar, "
            "/health, /metrics; the web page at /; OpenAPI docs at /docs. Events and items added through the "
            "API are logged to SQLite (MODEL_DIR/state.sqlite or --state) and replayed at start-up."
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
    p.add_argument("--state", default=None, help="SQLite state log (default MODEL_DIR/state.sqlite)")
    p.add_argument("--no-persist", action="store_true", help="keep online state in memory only")
    p.add_argument(
        "--ann", choices=("auto", "yes", "no"), default="auto", help="ANN index (auto: >= 20,000 items)"
    )
    p.add_argument("--ann-kind", choices=("ivf", "hnsw"), default="ivf", help="ANN index type (default ivf)")
    p.add_argument(
        "--model-weight", type=float, default=None, help="weight of the model's scores vs vector similarity"
    )
    p.add_argument("--max-k", type=int, default=None, help="largest k a request may ask for (default 1000)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    from tokrec.serve.app import ServeSettings

    opts: dict[str, object] = {
        "api_key": args.api_key or os.environ.get("TOKREC_API_KEY") or None,
        "redis_url": args.redis_url,
        "redis_prefix": args.redis_prefix,
        "persist": not args.no_persist,
        "ann": {"auto": None, "yes": True, "no": False}[args.ann],
        "ann_kind": args.ann_kind,
    }
    if args.state:
        opts["state_path"] = args.state
    if args.model_weight is not None:
        opts["model_weight"] = args.model_weight
    if args.max_k is not None:
        opts["max_k"] = args.max_k
    try:
        return ServeSettings.model_validate(opts)
    except Exception as e:
        from tokrec.errors import ConfigError

        raise ConfigError(f"invalid option: {e}") from e


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from tokrec.serve.app import create_app

    app = create_app(args.model, settings=settings_from_args(args))
    print(f"tokrec serve: http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
