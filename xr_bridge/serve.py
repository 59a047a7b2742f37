"""``voice-tutor serve``: the bridge server with the voice tutor in every room.

Loads the speech models once, starts :class:`~xr_bridge.server.BridgeServer`
on one port (the page from ``assets/web`` over HTTP, the protocol at
``/ws``) with a :class:`~xr_bridge.voice.VoiceRoom` per room, and prints the
page's address with ready-made join tokens for a learner, a teacher and an
observer.  ``python -m xr_bridge.serve`` runs the same command on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

from voice_tutor.config import ASSETS_DIR, Config, load_config, with_overrides

WEB_DIR = ASSETS_DIR / "web"
THREE_MODULE = Path("node_modules/three/build/three.module.js")


def _progress(message: str) -> None:
    print(f"· {message}", file=sys.stderr, flush=True)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The model options every ``voice-tutor`` command takes (for running this module on its own)."""
    parser.add_argument("--config", type=Path, help="a TOML configuration file")
    parser.add_argument("--stt-model", help="faster-whisper model: bundled:whisper-base, a directory, or a size")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where Whisper runs (default auto)")
    parser.add_argument("--language", help="spoken language code (default en)")
    parser.add_argument("--voice", help="piper voice: bundled:joe or a path to an .onnx voice")


def add_serve_command(subparsers, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``voice-tutor`` subcommands; ``parents`` carries the common model options."""
    serve = subparsers.add_parser(
        "serve", parents=list(parents), help="the lesson for browsers and headsets (kiosk, WebXR) over websockets",
        description="Serve the kiosk/WebXR page and the XR bridge; every room gets a voice tutoring session.",
    )  # fmt: skip
    if not parents:
        add_common_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port for the page and the websocket (default 8765)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate: https/wss (headsets need it off localhost)")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert (if not in the same file)")
    serve.add_argument("--secret", help="signs join tokens, at least 16 characters (default: random for this run)")
    serve.add_argument("--room", default="demo", help="the room of the printed links (default demo)")
    serve.add_argument("--learner", default="Learner", help="the learner name in the printed learner link")
    serve.add_argument("--token-hours", type=float, default=12.0, help="how long the printed links work (default 12)")
    serve.add_argument("--lesson", help="lesson id or path (default arithmetic)")
    serve.add_argument("--llm-url", help="an OpenAI-compatible endpoint (default: the offline tutor)")
    serve.add_argument("--llm-model", help="the model to ask at --llm-url")
    serve.add_argument("--db", type=Path, help="remember each room's first learner in this learner database")
    serve.add_argument("--static-dir", type=Path, default=WEB_DIR, help=argparse.SUPPRESS)
    serve.set_defaults(run=run_serve)
    return serve


def _config(args: argparse.Namespace) -> Config:
    return with_overrides(
        load_config(args.config),
        stt={"model": args.stt_model, "device": args.device, "language": args.language},
        tts={"voice": args.voice},
        llm={"base_url": args.llm_url, "model": args.llm_model},
        dialogue={"lesson": args.lesson, "store": args.db},
    )


def _fail(message: str) -> int:
    print(f"voice-tutor: error: {message}", file=sys.stderr)
    return 2


def run_serve(args: argparse.Namespace) -> int:
    """Run until interrupted (Ctrl+C or SIGTERM); expected errors are left to the CLI's one-line handler."""
    secret = (args.secret or secrets.token_urlsafe(32)).encode()
    if len(secret) < 16:
        return _fail("--secret must be at least 16 characters")
    if args.tls_key and not args.tls_cert:
        return _fail("--tls-key needs --tls-cert")
    if not 0 < args.token_hours <= 24 * 365:
        return _fail("--token-hours must be above 0 and at most a year")
    try:
        return asyncio.run(_serve(args, _config(args), secret))
    except KeyboardInterrupt:
        return 130


async def _serve(args: argparse.Namespace, config: Config, secret: bytes) -> int:
    from voice_tutor.session import SpeechModels
    from voice_tutor.tutoring import load_configured_lesson

    from .server import BridgeServer, load_ssl_context
    from .voice import voice_session_factory

    lesson = load_configured_lesson(config)  # a bad lesson or a dead endpoint fails here, not in the first room
    if config.llm.base_url:
        from voice_tutor.dialogue.llm import check_endpoint

        await check_endpoint(config.llm)
    tls = None
    if args.tls_cert:
        try:
            tls = load_ssl_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as error:
            return _fail(f"cannot use the TLS certificate {args.tls_cert}: {error}")
    if args.port:  # fail before the models load, not after
        try:
            socket.create_server((args.host, args.port)).close()
        except OSError as error:
            return _fail(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
    static_dir = Path(args.static_dir)
    if not (static_dir / "index.html").is_file():
        return _fail(f"the page is missing: {static_dir / 'index.html'}")
    if not (static_dir / THREE_MODULE).is_file():
        _progress(f"three.js is missing, the page will show no 3D scene: run `npm ci --prefix {static_dir}`")

    models = await asyncio.to_thread(SpeechModels.load, config, _progress)
    store = None
    try:
        if args.db:
            from voice_tutor.store import Store

            store = await asyncio.to_thread(Store.open, args.db)
        server = BridgeServer(
            secret, host=args.host, port=args.port, static_dir=static_dir, ssl=tls,
            session_factory=voice_session_factory(models, config, store=store),
        )  # fmt: skip
        try:
            await server.start()
        except OSError as error:
            return _fail(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}")
        try:
            _announce(server, args, lesson.title, lesson.id)
            await _until_stopped()
        finally:
            _progress("stopping…")
            await server.close()
    finally:
        models.close()
        if store is not None:
            store.close()
    return 0


def page_url(base: str, room: str, role: str, name: str, token: str) -> str:
    return f"{base}?{urlencode({'room': room, 'role': role, 'name': name, 'token': token})}"


def _announce(server, args: argparse.Namespace, title: str, lesson_id: str) -> None:
    host = args.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    scheme = "https" if server.url.startswith("wss") else "http"
    bracketed = f"[{host}]" if ":" in host else host
    base = f"{scheme}://{bracketed}:{server.port}/"
    ttl = args.token_hours * 3600
    links = [
        (role, page_url(base, args.room, role, name, server.make_token(args.room, role, name, ttl_s=ttl)))
        for role, name in (("learner", args.learner), ("teacher", "Teacher"), ("observer", "Observer"))
    ]
    print(f"voice-tutor serve: {title} ({lesson_id}), room {args.room!r}, on {base}", flush=True)
    for role, url in links:
        print(f"  {role + ':':<10}{url}", flush=True)
    print(f"  (links work for {args.token_hours:g} h; Ctrl+C stops the server)", flush=True)


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xr_bridge.serve [options]``: the same as ``voice-tutor serve``."""
    import logging

    from voice_tutor.cli import EXPECTED_ERRORS

    parser = argparse.ArgumentParser(prog="python -m xr_bridge")
    commands = parser.add_subparsers(dest="command")
    add_serve_command(commands)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.run(args)
    except EXPECTED_ERRORS as error:
        print(f"voice-tutor: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
